"""Bad input gives a ValueError / TypeError that names the argument and says what was expected
and what came -- never a traceback from inside a kernel."""

import pytest
import torch

import atenea
from atenea import masks, scores
from tests.helpers import make_qkv


def q_k_v(**kwargs):
    return make_qkv(**kwargs)


@pytest.mark.parametrize(
    "build, error, pattern",
    [
        (
            lambda: (*make_qkv()[:2], make_qkv()[2][..., :5, :]),
            ValueError,
            r"v: must have k's heads and length, expected \(B, 2, 17, Dv\), got \(2, 2, 5, 8\)",
        ),
        (
            lambda: (make_qkv(head_dim=8)[0], *make_qkv(head_dim=6)[1:]),
            ValueError,
            r"k: head_dim must match q's .* expected 8, got 6",
        ),
        (
            lambda: (make_qkv(q_heads=5)[0], *make_qkv()[1:]),
            ValueError,
            r"query heads must be a multiple of the key/value heads .* q heads 5 and k/v heads 2",
        ),
        (
            lambda: (make_qkv(batch=3)[0], *make_qkv()[1:]),
            ValueError,
            r"k, v: batch size must match q's 3",
        ),
        (
            lambda: (make_qkv()[0][0], *make_qkv()[1:]),
            ValueError,
            r"q: expected 4 dimensions \(batch, heads, length, head_dim\), got shape \(6, 13, 8\)",
        ),
        (
            lambda: (make_qkv()[0].float(), *make_qkv()[1:]),
            TypeError,
            r"q, k, v: must share one dtype",
        ),
        (
            lambda: (make_qkv()[0].long(), *make_qkv()[1:]),
            TypeError,
            r"q: expected a floating-point tensor, got dtype torch.int64",
        ),
        (lambda: ([1.0], *make_qkv()[1:]), TypeError, r"q: expected a torch.Tensor, got list"),
    ],
    ids=[
        "value_length",
        "head_dim",
        "gqa_ratio",
        "batch",
        "rank",
        "dtype_mix",
        "int_dtype",
        "not_tensor",
    ],
)
def test_bad_tensors(build, error, pattern):
    q, k, v = build()
    for backend in ("auto", "reference", "sdpa", "blocks"):
        with pytest.raises(error, match=pattern):
            atenea.attention(q, k, v, backend=backend)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (
            dict(mask=masks.key_padding([17, 18])),
            ValueError,
            r"key_padding: lengths must be in \[0, Lk=17\], got values from 17 to 18",
        ),
        (dict(mask=masks.key_padding([-1, 3])), ValueError, r"key_padding: lengths must be in"),
        (
            dict(mask=masks.key_padding([1, 2, 3])),
            ValueError,
            r"carries a batch of 3 but the attention batch is 2",
        ),
        (
            dict(mask=masks.document(torch.zeros(16, dtype=torch.long))),
            ValueError,
            r"document: ids .* expected length Lk=17, got 16",
        ),
        (
            dict(mask=torch.ones(13, 16, dtype=torch.bool)),
            ValueError,
            r"mask: a dense mask of shape \(1, 1, 13, 16\) cannot broadcast to "
            r"\(B=2, H=6, Lq=13, Lk=17\)",
        ),
        (
            dict(mask=torch.zeros(13, 17)),
            TypeError,
            r"dense: expected a boolean tensor where True means",
        ),
        (
            dict(mask=masks.causal),
            TypeError,
            r"call it to make a mask, e.g. mask=masks.causal\(...\)",
        ),
        (dict(mask="causal"), TypeError, r"mask: expected an atenea mask"),
        (dict(scale="big"), TypeError, r"scale: expected a finite float"),
        (dict(dropout_p=1.0), ValueError, r"dropout_p: expected a float in \[0, 1\), got 1.0"),
        (
            dict(backend="flash"),
            ValueError,
            r"backend: expected one of auto, reference, sdpa, blocks, decode, flex, triton, got 'flash'",
        ),
        (dict(score_mod=3), TypeError, r"score_mod: expected a callable"),
        (
            dict(score_mod=scores.softcap(2.0), backend="sdpa"),
            ValueError,
            r"backend='sdpa': PyTorch's fused kernel cannot apply a score_mod; "
            r"use backend='blocks'",
        ),
    ],
    ids=[
        "padding_too_long",
        "padding_negative",
        "padding_batch",
        "document_length",
        "dense_shape",
        "float_mask",
        "uncalled_mask",
        "string_mask",
        "scale",
        "dropout",
        "backend",
        "score_mod",
        "sdpa_score_mod",
    ],
)
def test_bad_options(kwargs, error, pattern):
    q, k, v = make_qkv()  # q (2, 6, 13, 8), k/v (2, 2, 17, 8)
    with pytest.raises(error, match=pattern):
        atenea.attention(q, k, v, **kwargs)


def test_document_mask_with_more_queries_than_keys():
    q, k, v = make_qkv(q_len=20, kv_len=17)
    with pytest.raises(ValueError, match=r"document: .* Lq must be <= Lk; got Lq=20, Lk=17"):
        atenea.attention(q, k, v, mask=masks.document(torch.zeros(17, dtype=torch.long)))
