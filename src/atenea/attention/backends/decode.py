"""The ``"decode"`` backend: one query per row, the step of generation with a KV cache.

For one query the textbook steps are two matrix-vector products per head, and the general
machinery (tiles, the fused kernels' setup, the checks for empty rows on the host) costs more
than the math. This path does the steps directly, with no host synchronisation, so the same
call runs eagerly, inside ``torch.compile`` and inside a captured CUDA graph: a decode step that
attends to the whole preallocated cache (the same shapes at every step) masks the slots not
written yet as "may not attend".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.attention.backends.guards import keep_nan_queries
from atenea.attention.problem import Problem, compute_dtype


def decode_attention(
    q: Tensor, k: Tensor, v: Tensor, problem: Problem, need_lse: bool
) -> tuple[Tensor, Tensor | None]:
    """``q (B, Hq, 1, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)`` -> ``out (B, Hq, 1, Dv)``
    and, if ``need_lse``, ``lse (B, Hq, 1)``.

    Grouped heads: query head ``j * G + g`` reads key/value head ``j``. A row whose mask allows
    no key gets output 0 and lse ``-inf``, as on every backend.
    """
    p = problem
    allowed = None  # (Bm, Hm, 1, Lk), True = may attend
    if p.mask is not None:
        allowed = p.mask.materialize(1, p.kv_len, device=q.device)
    on_gpu = q.device.type == "cuda"
    if not need_lse and (on_gpu or (p.group == 1 and q.dtype == torch.float32)):
        # PyTorch's fused kernel does the same steps in one call (20 us against 36 for the
        # steps below, 12 heads x 96 keys, in a development measurement). On a GPU it also
        # reads a half-precision cache as it is, accumulating in float32, where the steps below
        # would copy the whole cache to float32 every layer and step.
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, scale=p.scale, enable_gqa=p.group > 1
        )
        out = keep_nan_queries(q, out)  # the CPU flash kernel writes 0 for a NaN query
        if allowed is not None:
            out = out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
        return out, None

    # Half types in float32, as the fused kernels compute: bfloat16 scores would keep three
    # significant digits. Query heads are grouped by the key head they read, so the keys are
    # never copied per query head.
    batch, kv_heads, group = p.batch, p.kv_heads, p.group
    dtype = compute_dtype(q.dtype)
    grouped = q.to(dtype).reshape(batch, kv_heads, group, p.head_dim)  # (B, Hkv, G, D)
    scores = (grouped @ k.to(dtype).transpose(-1, -2)) * p.scale  # (B, Hkv, G, Lk)
    if allowed is not None:
        mask_batch, mask_heads = allowed.shape[:2]
        if mask_heads == 1:
            allowed = allowed.view(mask_batch, 1, 1, p.kv_len)
        else:
            allowed = allowed.view(mask_batch, kv_heads, group, p.kv_len)
        scores = scores.masked_fill(~allowed, float("-inf"))
    # Every key masked (not "none above -inf"): a NaN query stays NaN, as on the fused paths.
    row_has_key = ~(scores == float("-inf")).all(-1, keepdim=True)  # (B, Hkv, G, 1)
    weights = torch.softmax(scores.masked_fill(~row_has_key, 0.0), dim=-1)
    weights = weights.masked_fill(~row_has_key, 0.0)
    out = (weights @ v.to(dtype)).to(q.dtype).reshape(batch, p.q_heads, 1, p.value_dim)
    lse = None
    if need_lse:
        lse = torch.logsumexp(scores, dim=-1).reshape(batch, p.q_heads, 1).detach()
    return out, lse
