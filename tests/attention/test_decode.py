"""The ``"decode"`` backend: one query per row (a generation step), against the float64
reference: grouped heads, every mask form, unwritten cache slots, rows with no key, lse and
gradients."""

import pytest
import torch

import atenea
from atenea import masks
from tests.helpers import max_error


def one_query(batch=3, q_heads=6, kv_heads=2, kv_len=37, dim=16, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(batch, q_heads, 1, dim, generator=generator)
    k = torch.randn(batch, kv_heads, kv_len, dim, generator=generator)
    v = torch.randn(batch, kv_heads, kv_len, dim + 3, generator=generator)  # Dv != D
    return q.to(dtype), k.to(dtype), v.to(dtype)


def reference(q, k, v, **kwargs):
    return atenea.attention(q.double(), k.double(), v.double(), backend="reference", **kwargs)


def key_mask(batch, kv_len, seed=1):
    allowed = torch.rand(batch, kv_len, generator=torch.Generator().manual_seed(seed)) < 0.6
    allowed[:, -1] = True
    return allowed


MASKS = {
    "none": lambda b, lk: None,
    "causal": lambda b, lk: masks.causal(),  # one bottom-right query: every key
    "key_padding": lambda b, lk: masks.key_padding(torch.tensor([lk, 5, 1][:b]), side="left"),
    "cache_slots": lambda b, lk: masks.dense(key_mask(b, lk)[:, None, None, :]),
    "per_head": lambda b, lk: masks.dense(torch.rand(b, 6, 1, lk) < 0.5),
    "window": lambda b, lk: masks.sliding_window(4) & masks.causal(),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("q_heads, kv_heads", [(6, 6), (6, 2), (6, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("mask_name", list(MASKS))
def test_matches_the_reference(dtype, q_heads, kv_heads, mask_name):
    q, k, v = one_query(q_heads=q_heads, kv_heads=kv_heads, dtype=dtype)
    mask = MASKS[mask_name](3, 37)
    out = atenea.attention(q, k, v, mask=mask, backend="decode")
    assert out.shape == (3, q_heads, 1, 19) and out.dtype == dtype
    expected = reference(q, k, v, mask=mask)
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    assert max_error(out.double(), expected) < tolerance


@pytest.mark.parametrize("q_heads, kv_heads", [(6, 6), (6, 2)], ids=["mha", "gqa"])
def test_auto_on_one_query_agrees_with_the_reference_and_sdpa(q_heads, kv_heads):
    q, k, v = one_query(q_heads=q_heads, kv_heads=kv_heads)
    mask = masks.dense(key_mask(3, 37)[:, None, None, :])
    auto = atenea.attention(q, k, v, mask=mask)
    assert max_error(auto.double(), reference(q, k, v, mask=mask)) < 1e-6
    assert max_error(auto, atenea.attention(q, k, v, mask=mask, backend="sdpa")) < 1e-6


@pytest.mark.parametrize("q_heads, kv_heads", [(6, 6), (6, 2)])
def test_a_row_with_no_key_gives_zeros_and_lse_minus_infinity(q_heads, kv_heads):
    q, k, v = one_query(q_heads=q_heads, kv_heads=kv_heads)
    allowed = key_mask(3, 37)
    allowed[1] = False
    mask = masks.dense(allowed[:, None, None, :])
    out, lse = atenea.attention(q, k, v, mask=mask, return_lse=True, backend="decode")
    assert torch.isfinite(out).all() and (out[1] == 0).all()
    assert (lse[1] == float("-inf")).all() and torch.isfinite(lse[[0, 2]]).all()
    plain = atenea.attention(q, k, v, mask=mask, backend="decode")
    assert (plain[1] == 0).all() and torch.equal(plain[[0, 2]], out[[0, 2]])


def test_lse_and_weights_match_the_reference():
    q, k, v = one_query()
    mask = masks.dense(key_mask(3, 37)[:, None, None, :])
    out, weights, lse = atenea.attention(
        q, k, v, mask=mask, return_weights=True, return_lse=True, backend="decode"
    )
    expected_out, expected_weights, expected_lse = reference(
        q, k, v, mask=mask, return_weights=True, return_lse=True
    )
    assert max_error(out.double(), expected_out) < 1e-6
    assert max_error(weights.double(), expected_weights) < 1e-6
    assert max_error(lse.double(), expected_lse.double()) < 1e-5


def test_gradients_match_the_reference():
    q, k, v = (t.double().requires_grad_() for t in one_query())
    mask = masks.dense(key_mask(3, 37)[:, None, None, :])
    grad = torch.randn(3, 6, 1, 19, dtype=torch.float64)
    atenea.attention(q, k, v, mask=mask, backend="decode").backward(grad)
    fast = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    atenea.attention(q, k, v, mask=mask, backend="reference").backward(grad)
    for got, expected in zip(fast, (q.grad, k.grad, v.grad)):
        assert max_error(got, expected) < 1e-10


def test_masked_keys_do_not_matter():
    q, k, v = one_query(kv_len=10)
    allowed = torch.arange(10)[None] >= 6  # the first slots: padding, or not written yet
    mask = masks.dense(allowed[:, None, None, :])
    out = atenea.attention(q, k, v, mask=mask, backend="decode")
    k[:, :, :6], v[:, :, :6] = 1e4, -3e4
    assert torch.equal(atenea.attention(q, k, v, mask=mask, backend="decode"), out)


@pytest.mark.parametrize(
    "options, pattern",
    [
        (dict(q_len=2), "Lq=2"),
        (dict(score_mod=lambda s, b, h, i, j: s), "score_mod=True"),
        (dict(dropout_p=0.1), "dropout_p=0.1"),
    ],
)
def test_asked_for_what_it_cannot_do_it_says_why(options, pattern):
    q, k, v = one_query()
    q = q.expand(-1, -1, options.pop("q_len", 1), -1)
    with pytest.raises(ValueError, match=f"backend='decode': .*{pattern}"):
        atenea.attention(q, k, v, backend="decode", **options)
