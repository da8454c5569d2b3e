"""The ``"sdpa"`` backend: PyTorch's fused ``scaled_dot_product_attention`` on a dense mask.

The mask is materialized as one boolean ``(Bm, Hm, Lq, Lk)`` tensor (or, for a square causal
mask, passed as ``is_causal``). Fast for dense attention; for sparse masks the ``"blocks"``
backend skips the empty tiles instead. Score modifiers are not possible here. The log-sum-exp
comes from the fused kernel itself, on the CPU and on CUDA (``cuda_lse.py``); only float64 on
a GPU and dropout rebuild it with a second pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.attention.backends.cuda_lse import fused_forward_with_lse
from atenea.attention.backends.explicit import log_sum_exp
from atenea.attention.backends.guards import keep_nan_queries
from atenea.attention.masks import Causal
from atenea.attention.problem import Problem

NEG_INF = float("-inf")
_fused_forward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _same_head_dims(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-pad q/k or v so all share one head size (the fused CPU kernel wants that). Zero
    columns change neither the scores (q . k) nor the kept columns of the output."""
    head_dim, value_dim = q.shape[-1], v.shape[-1]
    if value_dim < head_dim:
        v = F.pad(v, (0, head_dim - value_dim))
    elif head_dim < value_dim:
        q, k = F.pad(q, (0, value_dim - head_dim)), F.pad(k, (0, value_dim - head_dim))
    return q, k, v


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, problem: Problem, need_lse: bool
) -> tuple[Tensor, Tensor | None]:
    """Returns ``out (B, Hq, Lq, Dv)`` and, if ``need_lse``, ``lse (B, Hq, Lq)``."""
    p = problem
    is_causal = isinstance(p.mask, Causal) and p.q_len == p.kv_len
    allowed = None
    if p.mask is not None and not is_causal:
        allowed = p.mask.materialize(p.q_len, p.kv_len, device=q.device)  # (Bm, Hm, Lq, Lk)

    lse = None
    fused = None
    if need_lse and q.device.type == "cuda":
        # The CUDA kernels report the log-sum-exp next to the output too.
        fused = fused_forward_with_lse(q, k, v, p, allowed, is_causal)
    if fused is not None:
        out, lse = fused
    elif need_lse and q.device.type == "cpu" and p.dropout_p == 0.0:
        # The fused CPU kernel reports the log-sum-exp next to the output.
        bias = None
        if allowed is not None:
            bias = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill_(~allowed, NEG_INF)
        q_, k_, v_ = _same_head_dims(q, k, v)
        out, lse = _fused_forward_op(q_, k_, v_, 0.0, is_causal, attn_mask=bias, scale=p.scale)
        out = out[..., : p.value_dim]
    else:
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=p.dropout_p,
            is_causal=is_causal,
            scale=p.scale,
            enable_gqa=p.group > 1,
        )
        if need_lse:
            lse = log_sum_exp(q, k, p)

    out = keep_nan_queries(q, out)  # the CPU flash kernel writes 0 for a NaN query
    if allowed is not None:
        # A query with no allowed key: output 0 and lse -inf, whatever the kernel reports.
        empty_rows = p.mask.empty_rows(p.q_len, p.kv_len, q.device)  # (Bm, Hm, Lq) or None
        if empty_rows is not None:
            out = out.masked_fill(empty_rows.unsqueeze(-1), 0.0)
            if lse is not None:
                lse = lse.masked_fill(empty_rows, NEG_INF)
    if lse is not None:
        lse = lse.detach()
    return out, lse
