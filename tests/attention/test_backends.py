"""Every backend computes the same function as the float64 reference: a sweep over masks,
shapes (Lq != Lk, GQA/MQA, odd lengths, head dims, Dv != D), dtypes, and random cases."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import atenea
from atenea import masks
from tests.helpers import make_qkv, max_error, reference, relative_error, run_blocks

# name -> factory(batch, q_len, kv_len) -> mask (True = may attend)
MASKS = {
    "none": lambda b, lq, lk: None,
    "causal": lambda b, lq, lk: masks.causal(),
    "window5": lambda b, lq, lk: masks.sliding_window(5),
    "padding": lambda b, lq, lk: masks.key_padding([lk, lk // 3][:b] + [lk] * (b - 2)),
    "padding_left_causal": lambda b, lq, lk: (
        masks.key_padding([lk // 2 + 1] * b, side="left") & masks.causal()
    ),
    "documents_causal": lambda b, lq, lk: (
        masks.document((torch.arange(lk) * 3 // max(lk, 1)).expand(b, lk)) & masks.causal()
    ),
    "prefix": lambda b, lq, lk: masks.prefix_lm(lk // 2),
    "dense_random": lambda b, lq, lk: masks.dense(
        torch.rand(b, 1, lq, lk, generator=torch.Generator().manual_seed(1)) > 0.4
    ),
    "empty_rows": lambda b, lq, lk: masks.causal() & masks.key_padding([0] + [lk] * (b - 1)),
    "window_or_prefix": lambda b, lq, lk: masks.sliding_window(3) | masks.prefix_lm(2),
}

# (batch, q_heads, kv_heads, q_len, kv_len, head_dim, value_dim): a different size per axis
SHAPES = {
    "gqa": (2, 6, 2, 13, 17, 8, 8),
    "more_queries_than_keys": (2, 3, 3, 17, 11, 16, 12),
    "decode_mqa": (2, 4, 1, 1, 29, 40, 40),
    "square7_d80": (3, 2, 1, 7, 7, 80, 80),
    "tile_plus_one": (2, 4, 2, 129, 131, 64, 64),
    "d128": (2, 2, 2, 33, 47, 128, 128),
}

FAST = ("sdpa", "blocks", "auto")


def _fast_outputs(q, k, v, mask):
    yield from ((name, atenea.attention(q, k, v, mask=mask, backend=name)) for name in FAST)
    yield "blocks_small_tiles", run_blocks(q, k, v, mask=mask, tiles=(16, 8))[0]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("mask_name", MASKS.keys())
def test_backends_match_reference(shape, mask_name):
    batch, hq, hkv, lq, lk, d, dv = shape
    if mask_name == "documents_causal" and lq > lk:
        pytest.skip("document masks place the queries among the keys (Lq <= Lk)")
    mask = MASKS[mask_name](batch, lq, lk)
    q, k, v = make_qkv(batch, hq, hkv, lq, lk, d, dv)
    expected = reference(q, k, v, mask=mask)
    assert expected.shape == (batch, hq, lq, dv)
    for name, out in _fast_outputs(q, k, v, mask):
        assert out.shape == expected.shape and out.dtype == torch.float64, name
        assert relative_error(out, expected) < 1e-6, name
    q32, k32, v32 = (t.float() for t in (q, k, v))
    for name, out in _fast_outputs(q32, k32, v32, mask):
        assert out.dtype == torch.float32
        assert relative_error(out, expected) < 1e-5, f"{name} float32"


@pytest.mark.parametrize("mask_name", ["causal", "window5", "documents_causal", "padding"])
def test_long_odd_length(mask_name):
    q, k, v = make_qkv(1, 2, 1, 1023, 1023, 16)
    mask = MASKS[mask_name](1, 1023, 1023)
    expected = reference(q, k, v, mask=mask)
    for name, out in _fast_outputs(q, k, v, mask):
        assert relative_error(out, expected) < 1e-6, name


@pytest.mark.parametrize("head_dim", [16, 40, 64, 80, 128])
def test_head_dims(head_dim):
    q, k, v = make_qkv(2, 4, 2, 37, 53, head_dim)
    mask = masks.sliding_window(9)
    expected = reference(q, k, v, mask=mask)
    for name, out in _fast_outputs(q, k, v, mask):
        assert relative_error(out, expected) < 1e-6, name


def _bf16_floor(reference_out: torch.Tensor) -> float:
    """Rounding noise of one bf16 add at the output's magnitude (FlashAttention 3's floor)."""
    ref = reference_out.to(torch.bfloat16)
    return 2 * ((ref + 0.3 - 0.3) - ref).abs().max().item()


@pytest.mark.parametrize("mask_name", ["none", "causal", "window5", "padding", "documents_causal"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_within_twice_pytorchs_own_error(mask_name, dtype):
    batch, hq, hkv, lq, lk, d = 2, 4, 2, 200, 261, 64
    mask = MASKS[mask_name](batch, lq, lk)
    q, k, v = make_qkv(batch, hq, hkv, lq, lk, d)
    golden = reference(q, k, v, mask=mask)
    low = [t.to(dtype) for t in (q, k, v)]
    allowed = None if mask is None else mask.materialize(lq, lk)
    torch_out = torch.nn.functional.scaled_dot_product_attention(
        *low, attn_mask=allowed, enable_gqa=True
    )
    if allowed is not None:  # rows with no allowed key: compare what atenea promises (zeros)
        torch_out = torch_out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
    torch_error = max_error(torch_out, golden)
    for name, out in _fast_outputs(*low, mask):
        assert out.dtype == dtype
        error = max_error(out, golden)
        assert error <= 2 * torch_error + _bf16_floor(golden), (name, error, torch_error)


def test_noncontiguous_inputs_match():
    # (B, L, H, D) storage viewed as (B, H, L, D): what a model's reshape gives
    q, k, v = (
        t.transpose(1, 2).contiguous().transpose(1, 2) for t in make_qkv(2, 4, 2, 40, 45, 16)
    )
    assert not q.is_contiguous()
    mask = masks.sliding_window(7) | masks.prefix_lm(3)
    expected = reference(q.contiguous(), k.contiguous(), v.contiguous(), mask=mask)
    for name, out in _fast_outputs(q, k, v, mask):
        assert relative_error(out, expected) < 1e-6, name


def test_explicit_scale():
    q, k, v = make_qkv()
    expected = reference(q, k, v, scale=0.37, mask=masks.causal())
    for name in FAST:
        out = atenea.attention(q, k, v, scale=0.37, mask=masks.causal(), backend=name)
        assert relative_error(out, expected) < 1e-6, name
    # the default scale is 1/sqrt(D), D = 8
    assert torch.equal(reference(q, k, v), reference(q, k, v, scale=1 / math.sqrt(8)))


def test_bool_tensor_mask_is_accepted():
    q, k, v = make_qkv()
    allowed = torch.rand(2, 1, 13, 17) > 0.5
    expected = reference(q, k, v, mask=masks.dense(allowed))
    for name in FAST:
        assert (
            relative_error(atenea.attention(q, k, v, mask=allowed, backend=name), expected) < 1e-6
        )


def test_auto_picks_the_fast_exact_path():
    from atenea.attention import select_backend
    from atenea.attention.problem import check_call

    def chosen(q_len, kv_len, mask=None, score_mod=None):
        q, k, v = make_qkv(1, 2, 1, q_len, kv_len, 8)
        return select_backend(check_call(q, k, v, mask, score_mod, None, 0.0, "auto"), "auto")

    assert chosen(300, 300) == "sdpa"
    assert chosen(300, 300, masks.causal()) == "sdpa"
    assert chosen(300, 500, masks.causal()) == "blocks"  # bottom-right causal: tiles
    assert chosen(300, 300, masks.sliding_window(16)) == "blocks"
    assert chosen(300, 300, score_mod=atenea.scores.softcap(5.0)) == "blocks"
    assert chosen(10, 10, masks.sliding_window(3)) == "sdpa"  # one tile: nothing to skip
    assert chosen(0, 10) == "reference"


# ------------------------------------------------------------------------------ hypothesis


@st.composite
def cases(draw):
    batch = draw(st.integers(1, 3))
    kv_heads = draw(st.integers(1, 3))
    q_heads = kv_heads * draw(st.integers(1, 3))
    kv_len = draw(st.integers(1, 70))
    q_len = draw(st.integers(1, kv_len))
    head_dim = draw(st.sampled_from([4, 8, 16, 24]))
    value_dim = draw(st.sampled_from([head_dim, 8]))
    kind = draw(st.sampled_from(list(MASKS)))
    tiles = (draw(st.sampled_from([1, 4, 8, 16, 128])), draw(st.sampled_from([1, 4, 8, 16, 128])))
    return batch, q_heads, kv_heads, q_len, kv_len, head_dim, value_dim, kind, tiles


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_random_cases_match_reference_with_gradients(case):
    batch, hq, hkv, lq, lk, d, dv, kind, tiles = case
    mask = MASKS[kind](batch, lq, lk)
    q, k, v = make_qkv(batch, hq, hkv, lq, lk, d, dv, requires_grad=True)
    grad = torch.randn(batch, hq, lq, dv, dtype=torch.float64)
    expected = reference(q, k, v, mask=mask)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad)
    for name, out in (
        ("sdpa", atenea.attention(q, k, v, mask=mask, backend="sdpa")),
        ("blocks", run_blocks(q, k, v, mask=mask, tiles=tiles)[0]),
    ):
        assert relative_error(out, expected) < 1e-6, name
        grads = torch.autograd.grad(out, (q, k, v), grad)
        for which, got, want in zip("qkv", grads, expected_grads):
            assert not got.isnan().any()
            assert max_error(got, want) < 1e-8 * (1 + want.abs().max().item()), (name, which)
