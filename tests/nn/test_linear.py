"""``atenea.nn.linear``: the same function as ``F.linear`` on whichever kernel it picks (atenea's
matvec for one row, oneDNN for more, PyTorch's otherwise), checked against float64."""

import pytest
import torch
import torch.nn.functional as F

import atenea.nn.linear as linear_module
from atenea import _native
from atenea.nn.linear import Linear, linear

NATIVE = _native.unavailable() is None
needs_native = pytest.mark.skipif(not NATIVE, reason=f"native kernels: {_native.unavailable()}")


def reference(x, weight, bias):
    out = x.double() @ weight.double().T
    return out if bias is None else out + bias.double()


def relative_error(out, x, weight, bias):
    expected = reference(x, weight, bias)
    return ((out.double() - expected).abs().max() / expected.abs().max()).item()


def close_to_float64(out, x, weight, bias) -> bool:
    """Within 2e-6 relative, or within twice PyTorch's own error (long sums in float32)."""
    error = relative_error(out, x, weight, bias)
    return error < max(2e-6, 2 * relative_error(F.linear(x, weight, bias), x, weight, bias))


@needs_native
@pytest.mark.parametrize(
    "out_features, in_features", [(768, 768), (1000, 777), (33, 9000), (5, 70000)]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_one_row_matches_float64(out_features, in_features, with_bias):
    # Row counts that are not a multiple of the kernel's row block (16 or 4) and widths that are
    # not a multiple of its 16 lanes exercise the tails.
    weight = torch.randn(out_features, in_features)
    bias = torch.randn(out_features) if with_bias else None
    for x in (torch.randn(1, in_features), torch.randn(1, 1, in_features)):
        out = linear(x, weight, bias)
        assert out.shape == (*x.shape[:-1], out_features) and out.dtype == torch.float32
        assert close_to_float64(out, x, weight, bias)


@needs_native
def test_matvec_on_two_threads_gives_the_one_thread_result():
    weight, x = torch.randn(4099, 1030), torch.randn(1, 1030)  # above the threshold for threads
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = linear(x, weight)
        torch.set_num_threads(2)
        two = linear(x, weight)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)  # rows are split between threads, sums are not


@needs_native
def test_bfloat16_one_row_accumulates_in_float32():
    weight, x, bias = torch.randn(2000, 1536), torch.randn(1, 1536), torch.randn(2000)
    weight, x, bias = weight.bfloat16(), x.bfloat16(), bias.bfloat16()
    out = linear(x, weight, bias)
    assert out.dtype == torch.bfloat16
    # Exact products summed in float32, then one rounding to bfloat16 (2^-8 relative).
    expected = reference(x, weight, bias)
    assert ((out.double() - expected).abs() <= expected.abs() * 2**-8 + 1e-2).all()


@needs_native
@pytest.mark.parametrize("rows", [2, 3, 5, 8])
@pytest.mark.parametrize("out_features, in_features", [(768, 768), (1001, 777), (13, 12000)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_few_rows_match_float64(rows, out_features, in_features, with_bias):
    # Row blocks (8 or 2) and input groups (2) with tails on both, and widths with a tail.
    weight = torch.randn(out_features, in_features)
    bias = torch.randn(out_features) if with_bias else None
    x = torch.randn(rows, 1, in_features)  # beams: (B, 1, dim)
    out = linear(x, weight, bias)
    assert out.shape == (rows, 1, out_features)
    assert close_to_float64(out, x, weight, bias)


@pytest.mark.skipif(not linear_module.ONEDNN, reason="PyTorch built without oneDNN")
@pytest.mark.parametrize("shape", [(3, 7, 512), (64, 512)])
def test_more_rows_match_float64(shape):
    weight, bias = torch.randn(1025, 512), torch.randn(1025)
    x = torch.randn(*shape)
    out = linear(x, weight, bias)
    assert out.shape == (*shape[:-1], 1025)
    assert relative_error(out, x, weight, bias) < 2e-6


def test_what_the_fast_kernels_do_not_cover_is_exactly_f_linear(monkeypatch):
    # Bitwise F.linear, where a fast kernel would sum in another order (1e-7 apart): tiny
    # products (a call costs more than the product), other dtypes, F.linear's 1-d semantics.
    big = torch.randn(1024, 1024)
    cases = [
        (torch.randn(1, 64), torch.randn(64, 64)),
        (torch.randn(1, 1024, dtype=torch.float64), big.double()),
        (torch.randn(2, 1024).half(), big.half()),
        (torch.randn(1024), big),
    ]
    for x, weight in cases:
        out = linear(x, weight)
        assert out.shape == F.linear(x, weight).shape and torch.equal(out, F.linear(x, weight))
    x = torch.randn(2, 1024)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts through F.linear
        out = linear(x, big)
        assert out.dtype == torch.bfloat16 and torch.equal(out, F.linear(x, big))
    # The switch for comparisons, read at every call (not once at import).
    monkeypatch.setenv("ATENEA_LINEAR", "aten")
    for rows in (1, 4, 64):
        x = torch.randn(rows, 1024)
        assert torch.equal(linear(x, big), F.linear(x, big))


def float64_gradients(x, weight, bias, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    F.linear(*leaves).backward(grad_out.double())
    return [t.grad for t in leaves]


@pytest.mark.skipif(not linear_module.ONEDNN, reason="PyTorch built without oneDNN")
@pytest.mark.parametrize("shape", [(1, 600), (5, 600), (2, 37, 600)])
def test_gradients_on_onednn_match_float64(shape):
    # Training products go to OneDNNLinear: forward and dx on oneDNN, dW on mm.
    weight = torch.randn(700, 600, requires_grad=True)
    bias = torch.randn(700, requires_grad=True)
    x = torch.randn(*shape, requires_grad=True)
    out = linear(x, weight, bias)
    assert out.grad_fn is not None and close_to_float64(out, x, weight, bias)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected = float64_gradients(x, weight, bias, grad_out)
    for ours, exact in zip((x.grad, weight.grad, bias.grad), expected):
        assert ours.shape == exact.shape and ours.dtype == torch.float32
        assert ((ours.double() - exact).abs().max() / exact.abs().max()) < 1e-5


@pytest.mark.skipif(not linear_module.ONEDNN, reason="PyTorch built without oneDNN")
def test_only_the_wanted_gradients_are_computed():
    weight = torch.randn(512, 512, requires_grad=True)
    x = torch.randn(4, 512)  # an input that needs no gradient (the first layer's)
    linear(x, weight).sum().backward()
    assert x.grad is None and weight.grad is not None
    frozen = torch.randn(512, 512)  # a frozen weight: only the input's gradient
    x.requires_grad_()
    linear(x, frozen).sum().backward()
    assert torch.allclose(x.grad, frozen.sum(0).expand(4, -1), rtol=1e-5, atol=1e-4)


def test_linear_module_has_nn_linear_s_parameters_and_output():
    module = Linear(700, 600)
    assert isinstance(module, torch.nn.Linear)
    assert [name for name, _ in module.named_parameters()] == ["weight", "bias"]
    x = torch.randn(4, 700)
    with torch.no_grad():
        assert relative_error(module(x), x, module.weight, module.bias) < 2e-6
        assert relative_error(module(x[:1]), x[:1], module.weight, module.bias) < 2e-6
