"""What PyTorch's fused CPU kernel gets wrong, put right after it.

The flash kernel for the CPU (``scaled_dot_product_attention`` without a mask, and the op the
``blocks`` backend calls per tile) returns **0** for a query row of NaN, as if the row were fully
masked; its math path, the fused GPU kernels and atenea's own steps return NaN. A broken input
must show, so the paths that run that kernel pass their output through ``keep_nan_queries``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def keep_nan_queries(q: Tensor, out: Tensor) -> Tensor:
    """``out (B, Hq, Lq, Dv)`` with NaN in every row whose query ``q (B, Hq, Lq, D)`` holds a
    NaN (or an infinity, whose scores are NaN too); other rows unchanged, bit for bit. One
    reduction over ``q``, no host synchronisation, no gradient."""
    # out + 0 * rowsum(q): 0 where the row is finite, NaN where not. The sum is taken in
    # float32 and multiplied by 0 before any cast, so a finite half-precision row whose sum
    # overflows its dtype is not mistaken for a broken one. In place when nothing needs
    # ``out`` for a backward pass; out of place when autograd may have saved it.
    if q.device.type != "cpu":  # only the CPU kernel loses the NaN
        return out
    poison = (q.detach().sum(-1, keepdim=True, dtype=torch.float32) * 0).to(out.dtype)
    if out.requires_grad:
        return torch.add(out, poison)
    return out.add_(poison)
