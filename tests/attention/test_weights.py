"""Weight recovery: return_weights / return_lse on every backend, and attention_weights
rebuilding chosen rows and heads from the log-sum-exp."""

import pytest
import torch

import atenea
from atenea import masks, scores
from tests.helpers import BACKENDS, make_qkv, max_error, reference

CASES = {
    "none": (None, None),
    "causal": (masks.causal(), None),
    "window_alibi": (masks.sliding_window(6), scores.alibi(6)),
    "padding_softcap": (masks.key_padding([17, 4]), scores.softcap(1.5)),
    "documents": (masks.document(torch.tensor([0] * 9 + [1] * 8)) & masks.causal(), None),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_returned_weights_and_lse_match_reference(case, backend):
    mask, score_mod = CASES[case]
    if backend == "sdpa" and score_mod is not None:
        pytest.skip("sdpa cannot apply a score_mod (tested in test_errors)")
    q, k, v = make_qkv()  # q (2, 6, 13, 8), k/v (2, 2, 17, 8)
    out_ref, w_ref, lse_ref = reference(
        q, k, v, mask=mask, score_mod=score_mod, return_weights=True, return_lse=True
    )
    out, weights, lse = atenea.attention(
        q,
        k,
        v,
        mask=mask,
        score_mod=score_mod,
        backend=backend,
        return_weights=True,
        return_lse=True,
    )
    assert weights.shape == (2, 6, 13, 17) and weights.dtype == torch.float64
    assert lse.shape == (2, 6, 13) and lse.dtype == torch.float32
    assert max_error(weights, w_ref) < 1e-12
    assert max_error(lse, lse_ref) < 1e-5
    assert max_error(out, out_ref) < 1e-12
    # the order of a returned tuple is out, weights, lse, with only those asked for
    only_lse = atenea.attention(
        q, k, v, mask=mask, score_mod=score_mod, backend=backend, return_lse=True
    )
    assert len(only_lse) == 2 and only_lse[1].shape == (2, 6, 13)
    # the weights really are what the output is made of
    assert max_error(weights @ v.repeat_interleave(3, 1), out) < 1e-12


@pytest.mark.parametrize("case", CASES)
def test_attention_weights_from_lse_selects_rows_and_heads(case):
    mask, score_mod = CASES[case]
    q, k, v = make_qkv()
    _, w_ref = reference(q, k, v, mask=mask, score_mod=score_mod, return_weights=True)
    _, lse = atenea.attention(q, k, v, mask=mask, score_mod=score_mod, return_lse=True)
    full = atenea.attention_weights(q, k, lse=lse, mask=mask, score_mod=score_mod)
    assert max_error(full, w_ref) < 1e-12
    rows, heads = [12, 0, 5], [4, 1]
    picked = atenea.attention_weights(
        q, k, lse=lse, mask=mask, score_mod=score_mod, rows=rows, heads=heads
    )
    assert picked.shape == (2, 2, 3, 17)
    assert max_error(picked, w_ref[:, heads][:, :, rows]) < 1e-12
    last = atenea.attention_weights(
        q, k, lse=lse, mask=mask, score_mod=score_mod, rows=-1, heads=slice(0, 6, 5)
    )
    assert max_error(last, w_ref[:, [0, 5], -1:]) < 1e-12


def test_weights_are_differentiable_when_autograd_needs_them():
    q, k, v = make_qkv(requires_grad=True)
    for backend in ("sdpa", "blocks"):
        _, weights = atenea.attention(
            q, k, v, mask=masks.causal(), backend=backend, return_weights=True
        )
        _, w_ref = reference(q, k, v, mask=masks.causal(), return_weights=True)
        g = torch.randn_like(w_ref)
        got = torch.autograd.grad(weights, (q, k), g)
        want = torch.autograd.grad(w_ref, (q, k), g)
        for a, b in zip(got, want):
            assert max_error(a, b) < 1e-10


def test_one_row_of_a_long_sequence_without_the_matrix():
    length = 8192
    q, k, v = make_qkv(1, 2, 1, length, length, 16, dtype=torch.float32)
    _, lse = atenea.attention(q, k, v, mask=masks.causal(), return_lse=True)
    row = atenea.attention_weights(q, k, lse=lse, mask=masks.causal(), rows=length - 1, heads=1)
    assert row.shape == (1, 1, 1, length)
    expected = torch.softmax((q[0, 1, -1] @ k[0, 0].T) / 4.0, dim=-1)
    assert max_error(row[0, 0, 0], expected) < 1e-6
    middle = atenea.attention_weights(q, k, lse=lse, mask=masks.causal(), rows=[4000], heads=[0])
    assert (middle[0, 0, 0, 4001:] == 0).all()
    assert abs(middle.sum().item() - 1) < 1e-5


def test_attention_weights_errors():
    q, k, v = make_qkv()
    _, lse = atenea.attention(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match=r"lse: expected shape \(B, Hq, Lq\) = \(2, 6, 13\)"):
        atenea.attention_weights(q, k, lse=lse[:, :3])
    with pytest.raises(ValueError, match=r"rows: indices must lie in \[-13, 13\)"):
        atenea.attention_weights(q, k, lse=lse, rows=13)
    with pytest.raises(ValueError, match=r"heads: indices must lie in \[-6, 6\)"):
        atenea.attention_weights(q, k, lse=lse, heads=[0, 6])
    with pytest.raises(TypeError, match="rows: expected an int"):
        atenea.attention_weights(q, k, lse=lse, rows=torch.ones(13, dtype=torch.bool))
    with pytest.raises(TypeError, match="lse: expected a tensor"):
        atenea.attention_weights(q, k, lse=None)


def test_attention_weights_take_empty_and_numpy_selections():
    """An empty selection is an empty answer (a [] became a float tensor and a TypeError), and
    numpy's ints and 0-d tensors select like ints."""
    import numpy as np

    q, k, v = make_qkv()
    _, lse = atenea.attention(q, k, v, return_lse=True)
    full = atenea.attention_weights(q, k, lse=lse)
    assert atenea.attention_weights(q, k, lse=lse, rows=[]).shape == (2, 6, 0, full.shape[-1])
    assert atenea.attention_weights(q, k, lse=lse, heads=()).shape == (2, 0, 13, full.shape[-1])
    for row in (np.int64(4), torch.tensor(4)):
        torch.testing.assert_close(atenea.attention_weights(q, k, lse=lse, rows=row),
                                   full[:, :, 4:5])  # fmt: skip


def test_row_32767_of_a_32k_sequence():
    """The issue's example: the last row of a 32k-token causal sequence."""
    length = 32768
    q, k, v = make_qkv(1, 1, 1, length, length, 16, dtype=torch.float32)
    _, lse = atenea.attention(q, k, v, mask=masks.causal(), return_lse=True)
    row = atenea.attention_weights(q, k, lse=lse, mask=masks.causal(), rows=32767)
    expected = torch.softmax((q[0, 0, -1] @ k[0, 0].T) / 4.0, dim=-1)
    assert max_error(row[0, 0, 0], expected) < 1e-6
