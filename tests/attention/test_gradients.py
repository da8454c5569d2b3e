"""Gradients of the fast backends against float64 autograd through the reference steps, and
``torch.autograd.gradcheck`` (finite differences) on small float64 shapes."""

import pytest
import torch

import atenea
from atenea import masks, scores
from tests.helpers import make_qkv, max_error, reference, run_blocks

GRAD_MASKS = {
    "none": None,
    "causal": masks.causal(),
    "window4": masks.sliding_window(4),
    "padding_with_empty_row": masks.key_padding([0, 9]) & masks.causal(),
    "documents": masks.document(torch.tensor([0] * 7 + [1] * 6 + [2] * 8)) & masks.causal(),
    "prefix": masks.prefix_lm(6),
}


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad)


@pytest.mark.parametrize("mask_name", GRAD_MASKS)
@pytest.mark.parametrize(
    "shape",
    [(2, 6, 2, 19, 21, 8, 8), (2, 4, 1, 1, 21, 16, 12), (2, 3, 3, 21, 21, 16, 16)],
    ids=["gqa", "decode_mqa_dv", "mha"],
)
def test_gradients_match_float64_autograd(mask_name, shape):
    mask = GRAD_MASKS[mask_name]
    q, k, v = make_qkv(*shape, requires_grad=True)
    grad = torch.randn(shape[0], shape[1], shape[3], shape[6], dtype=torch.float64)
    expected = _grads(reference(q, k, v, mask=mask), (q, k, v), grad)
    candidates = {
        "sdpa": atenea.attention(q, k, v, mask=mask, backend="sdpa"),
        "blocks": atenea.attention(q, k, v, mask=mask, backend="blocks"),
        "blocks_tiles_4x3": run_blocks(q, k, v, mask=mask, tiles=(4, 3))[0],
    }
    for name, out in candidates.items():
        for which, got, want in zip("qkv", _grads(out, (q, k, v), grad), expected):
            assert got.shape == want.shape
            assert max_error(got, want) < 1e-10, (name, which)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_gradients(dtype):
    mask = masks.sliding_window(24) & masks.key_padding([150, 97])
    q, k, v = make_qkv(2, 4, 2, 150, 150, 32, requires_grad=True)
    grad = torch.randn(2, 4, 150, 32, dtype=torch.float64)
    golden = _grads(reference(q, k, v, mask=mask), (q, k, v), grad)
    low = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    torch_grads = _grads(
        torch.nn.functional.scaled_dot_product_attention(
            *low, attn_mask=mask.materialize(150, 150), enable_gqa=True
        ),
        low,
        grad.to(dtype),
    )
    for backend in ("sdpa", "blocks"):
        out = atenea.attention(*low, mask=mask, backend=backend)
        for which, got, want, theirs in zip(
            "qkv", _grads(out, low, grad.to(dtype)), golden, torch_grads
        ):
            assert got.dtype == dtype
            # FlashAttention's rule for gradients: within 3x PyTorch's own error (+ rounding floor)
            floor = 1e-5 if dtype == torch.float32 else 2e-2 * want.abs().max().item()
            assert max_error(got, want) <= 3 * max_error(theirs, want) + floor, (backend, which)


GRADCHECK_CASES = {
    "blocks_fused_causal": dict(backend="blocks", mask=masks.causal()),
    "blocks_fused_padding": dict(backend="blocks", mask=masks.key_padding([3, 0])),
    "blocks_softcap": dict(
        backend="blocks", mask=masks.sliding_window(3), score_mod=scores.softcap(2.0)
    ),
    "blocks_alibi": dict(backend="blocks", score_mod=scores.alibi(4)),
    "sdpa_prefix": dict(backend="sdpa", mask=masks.prefix_lm(2)),
    "reference_window": dict(backend="reference", mask=masks.sliding_window(2)),
}


@pytest.mark.parametrize("case", GRADCHECK_CASES)
def test_gradcheck(case):
    kwargs = GRADCHECK_CASES[case]
    q, k, v = make_qkv(2, 4, 2, 5, 6, 4, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v: atenea.attention(q, k, v, **kwargs), (q, k, v))


def test_relative_bias_parameters_get_the_reference_gradient():
    bias = scores.relative_bias(6, num_buckets=8, max_distance=16).double()
    with torch.no_grad():
        bias.table.weight.normal_()
    q, k, v = make_qkv(2, 6, 3, 40, 52, 8, requires_grad=True)
    grad = torch.randn(2, 6, 40, 8, dtype=torch.float64)
    inputs = (q, k, v, bias.table.weight)
    expected = _grads(reference(q, k, v, mask=masks.causal(), score_mod=bias), inputs, grad)
    for out in (
        atenea.attention(q, k, v, mask=masks.causal(), score_mod=bias, backend="blocks"),
        run_blocks(q, k, v, mask=masks.causal(), score_mod=bias, tiles=(8, 16))[0],
    ):
        for got, want in zip(_grads(out, inputs, grad), expected):
            assert max_error(got, want) < 1e-10
    assert expected[3].abs().sum() > 0  # the test would be empty otherwise


def test_backward_memory_is_not_quadratic():
    """The blocks backward recomputes tiles: autograd keeps q, k, v, out and lse, nothing L x L."""
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    length = 2048
    q, k, v = make_qkv(1, 2, 2, length, length, 16, dtype=torch.float32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = atenea.attention(q, k, v, mask=masks.sliding_window(64), backend="blocks")
    out.sum().backward()
    assert max(saved) <= 2 * length * 16, f"largest saved tensor has {max(saved)} elements"
