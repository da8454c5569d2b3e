"""Dropout on the attention weights: the right fraction is dropped, survivors are rescaled by
1/(1-p), it is reproducible from the seed, and the tiled backward regenerates the same mask."""

import math

import pytest
import torch

import atenea
from atenea import masks
from tests.helpers import BACKENDS, make_qkv, max_error


def _dropped_weights(backend, p, mask, length=64, heads=4, seed=0):
    """With q = 0 the weights are uniform over the allowed keys, and with v = identity the
    output *is* the dropped weight matrix: out[i, j] = keep[i, j] * w[i, j] / (1 - p)."""
    torch.manual_seed(seed)
    q = torch.zeros(2, heads, length, 8)
    k = torch.randn(2, heads, length, 8)
    v = torch.eye(length).expand(2, heads, length, length)
    return atenea.attention(q, k, v, mask=mask, dropout_p=p, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropped_fraction_and_rescaling(backend, p):
    mask = masks.sliding_window(40) if backend != "sdpa" else masks.causal()
    out = _dropped_weights(backend, p, mask, length=300 if backend == "blocks" else 64)
    length = out.shape[-1]
    allowed = mask.materialize(length, length).expand_as(out)
    weight = 1.0 / allowed.sum(-1, keepdim=True)  # uniform weights over the allowed keys
    kept = out[allowed] != 0
    n = kept.numel()
    dropped_fraction = 1 - kept.float().mean().item()
    # five standard deviations of a binomial proportion: deterministic seed, so never flaky
    assert abs(dropped_fraction - p) < 5 * math.sqrt(p * (1 - p) / n), dropped_fraction
    survivors = out[allowed][kept]
    expected = (weight.expand_as(out)[allowed][kept]) / (1 - p)
    assert torch.allclose(survivors, expected, rtol=1e-5)
    assert (out[~allowed] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_reproducible_from_the_seed(backend):
    first = _dropped_weights(backend, 0.3, masks.causal(), seed=7)
    again = _dropped_weights(backend, 0.3, masks.causal(), seed=7)
    other = _dropped_weights(backend, 0.3, masks.causal(), seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_blocks_dropout_is_unbiased():
    q, k, v = make_qkv(1, 2, 2, 150, 150, 8, dtype=torch.float32)
    mask = masks.sliding_window(50)
    plain = atenea.attention(q, k, v, mask=mask, backend="blocks")
    runs = 400
    mean = (
        sum(
            atenea.attention(q, k, v, mask=mask, dropout_p=0.2, backend="blocks")
            for _ in range(runs)
        )
        / runs
    )
    # the standard error of the mean shrinks as 1/sqrt(runs); 0.1 is ~5 of them here
    assert max_error(mean, plain) < 0.1 * plain.abs().max().item()


@pytest.mark.parametrize("backend", ["blocks", "sdpa", "reference"])
def test_dropout_gradient_uses_the_forward_mask(backend):
    """gradcheck with the seed reset inside: every evaluation draws the same dropout mask, so
    the analytic backward must agree with finite differences of that very function."""
    q, k, v = make_qkv(2, 4, 2, 7, 9, 4, 3, requires_grad=True)
    mask = masks.causal() if backend != "blocks" else masks.causal() & masks.key_padding([9, 4])

    def function(q, k, v):
        torch.manual_seed(123)
        return atenea.attention(q, k, v, mask=mask, dropout_p=0.4, backend=backend)

    assert torch.autograd.gradcheck(function, (q, k, v))
