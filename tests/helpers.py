"""Shared test helpers: inputs with a different size on every axis, and error measures."""

from __future__ import annotations

import torch

import atenea
from atenea.attention.backends.blocks import blocks_attention
from atenea.attention.problem import check_call

BACKENDS = ("reference", "sdpa", "blocks", "auto")


def make_qkv(
    batch=2,
    q_heads=6,
    kv_heads=2,
    q_len=13,
    kv_len=17,
    head_dim=8,
    value_dim=None,
    dtype=torch.float64,
    requires_grad=False,
    seed=0,
    scale=1.0,
):
    """Random q, k, v. Defaults give every axis a different size, so a transposition fails."""
    generator = torch.Generator().manual_seed(seed)
    value_dim = head_dim if value_dim is None else value_dim

    def rand(*shape):
        t = (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    return (
        rand(batch, q_heads, q_len, head_dim),
        rand(batch, kv_heads, kv_len, head_dim),
        rand(batch, kv_heads, kv_len, value_dim),
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    diff = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return diff / scale if scale > 0 else diff


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if not expected.numel():
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def run_blocks(q, k, v, *, mask=None, score_mod=None, scale=None, dropout_p=0.0, tiles=(128, 128)):
    """The blocks backend with chosen tile sizes (small tiles exercise many-tile plans on
    small inputs)."""
    problem = check_call(q, k, v, mask, score_mod, scale, dropout_p, "blocks")
    return blocks_attention(q, k, v, problem, q_tile=tiles[0], k_tile=tiles[1])


def reference(q, k, v, **kwargs):
    return atenea.attention(q, k, v, backend="reference", **kwargs)


def assert_same_weights(a, b, **close):
    """Two models hold the same tensors under the same names: bit for bit, or within
    ``close`` (``rtol=``, ``atol=``) when given. A missing or extra tensor fails too."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], msg=name, **(close or dict(rtol=0, atol=0)))
