"""A tensor captured by a score modifier gets its gradient on every backend that takes score
modifiers, equal to the float64 reference's, also when q, k and v need none; the fused backends
that cannot apply a modifier refuse it."""

import functools

import pytest
import torch

from atenea.attention import attention, masks
from atenea.attention.captured import captured_tensors

B, H, L, D = 2, 3, 37, 8  # 37: a ragged last tile
BACKENDS = ["reference", "blocks", "auto"]


def _inputs(dtype, need_grad):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, generator=generator, dtype=torch.float64) for _ in range(3))
    table = torch.randn(H, 2 * L - 1, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(B, H, L, D, generator=generator, dtype=torch.float64)
    q, k, v, table = (t.to(dtype).requires_grad_(need_grad) for t in (q, k, v, table))
    return q, k, v, table.requires_grad_(True), grad_out.to(dtype)


def _closure(table):
    def bias(score, batch, head, q_pos, k_pos):
        return score + table[head, q_pos - k_pos + L - 1]

    return bias


def _default(table):
    def bias(score, batch, head, q_pos, k_pos, table=table):
        return score + table[head, q_pos - k_pos + L - 1]

    return bias


def _partial(table):
    def bias(score, batch, head, q_pos, k_pos, table):
        return score + table[head, q_pos - k_pos + L - 1]

    return functools.partial(bias, table=table)


def _gradients(backend, dtype, need_grad, capture, mask):
    q, k, v, table, grad_out = _inputs(dtype, need_grad)
    out = attention(q, k, v, mask=mask, score_mod=capture(table), backend=backend)
    out.backward(grad_out)
    return [t.grad for t in (table, q, k, v)]


@pytest.mark.parametrize("capture", [_closure, _default, _partial])
@pytest.mark.parametrize("need_grad", [True, False], ids=["qkv-grad", "qkv-no-grad"])
@pytest.mark.parametrize("mask", [None, masks.causal()], ids=["dense", "causal"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_captured_table_gets_the_reference_gradient(backend, mask, need_grad, capture):
    expected = _gradients("reference", torch.float64, need_grad, capture, mask)
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        found = _gradients(backend, dtype, need_grad, capture, mask)
        assert found[0] is not None, f"{backend}: the captured table got no gradient"
        torch.testing.assert_close(found[0].double(), expected[0], rtol=tolerance, atol=tolerance)
        for got, want in zip(found[1:], expected[1:]):
            assert (got is None) == (want is None) == (not need_grad)
            if want is not None:
                torch.testing.assert_close(got.double(), want, rtol=tolerance, atol=tolerance)


def test_fused_backends_refuse_a_modifier():
    q, k, v, table, _ = _inputs(torch.float32, False)
    with pytest.raises(ValueError, match="score_mod"):
        attention(q, k, v, score_mod=_closure(table), backend="sdpa")
    with pytest.raises(ValueError, match="score_mod"):
        attention(q[:, :, :1], k, v, score_mod=_closure(table), backend="decode")


def test_what_the_search_finds():
    table, frozen = torch.zeros(3, requires_grad=True), torch.zeros(3)
    assert captured_tensors(None) == [] and captured_tensors(_closure(frozen)) == []
    composed = [_closure(table), lambda s, *_: s]  # nested in a list, reached twice: once
    found = captured_tensors(lambda s, b, h, q, k: composed[0](composed[1](s), b, h, q, k))
    assert len(found) == 1 and found[0] is table
