"""Attention of one new query per row against a whole preallocated KV cache: the decode step.

For one query the textbook steps are two matrix-vector products per head, and the general
machinery (masks as tiles, the fused kernels' setup) costs more than the math. The cache is
attended to whole -- every step has the same shapes, so ``torch.compile`` makes one graph --
with a boolean key mask that is True for the positions holding real tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def single_query_attention(q: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor) -> Tensor:
    """``q (B, Hq, 1, D)``, ``keys (B, Hkv, C, D)``, ``values (B, Hkv, C, Dv)``,
    ``key_mask (B, C)`` (True = may attend) -> ``(B, Hq, 1, Dv)``.

    Grouped heads: query head ``j * G + g`` reads key/value head ``j``, as in
    ``atenea.attention``. Every row must have at least one True key (the decode step's own new
    token is always one): a fully masked row would give NaN here.
    """
    batch, q_heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    if q_heads == kv_heads and q.dtype == torch.float32:
        # PyTorch's fused kernel: the same steps in one call (20 us against 36 for the steps
        # below, 12 heads x 96 keys). Grouped heads would need enable_gqa (PyTorch >= 2.5).
        mask = key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    # In float32 whatever the storage, as the fused kernels compute: bfloat16 scores would keep
    # three significant digits.
    grouped = q.float().reshape(batch, kv_heads, q_heads // kv_heads, dim)  # (B, Hkv, G, D)
    scores = (grouped @ keys.float().transpose(-1, -2)) * dim**-0.5  # (B, Hkv, G, C)
    weights = scores.masked_fill(~key_mask[:, None, None, :], float("-inf")).softmax(dim=-1)
    return (weights @ values.float()).to(q.dtype).reshape(batch, q_heads, 1, -1)
