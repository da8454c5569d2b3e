"""``single_query_attention``: the decode step's attention of one new query per row against a
whole preallocated cache, against the float64 reference."""

import pytest
import torch

import atenea
from atenea import masks
from atenea.attention.single_query import single_query_attention


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("q_heads, kv_heads", [(6, 6), (6, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("capacity", [1, 7, 130])
def test_matches_the_reference_on_the_real_keys(dtype, q_heads, kv_heads, capacity):
    batch, dim = 3, 16
    q = torch.randn(batch, q_heads, 1, dim)
    keys, values = torch.randn(2, batch, kv_heads, capacity, dim)
    key_mask = torch.rand(batch, capacity) < 0.6  # left padding and unfilled slots alike
    key_mask[:, -1] = True  # the new token: every row has at least one key
    out = single_query_attention(q.to(dtype), keys.to(dtype), values.to(dtype), key_mask)
    assert out.shape == (batch, q_heads, 1, dim) and out.dtype == dtype
    expected = atenea.attention(
        q.double(), keys.double(), values.double(), mask=masks.dense(key_mask[:, None, None, :]),
        backend="reference",
    )  # fmt: skip
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    assert (out.double() - expected).abs().max() < tolerance


def test_masked_keys_do_not_matter():
    q, keys, values = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 10, 8), torch.randn(1, 4, 10, 8)
    key_mask = torch.arange(10)[None] >= 6
    out = single_query_attention(q, keys, values, key_mask)
    keys[:, :, :6], values[:, :, :6] = 1e4, -3e4  # other keys where the mask is False (padding)
    assert torch.equal(single_query_attention(q, keys, values, key_mask), out)
