"""The ``"reference"`` backend: attention as the textbook writes it, one step per line.

It materializes the whole ``(B, H, Lq, Lk)`` score matrix, works in any dtype (float64
included) and is the oracle every other backend is tested against. Read it first.

Half-precision inputs (float16, bfloat16) are computed in float32 and the result returned in the
input dtype, as PyTorch's math path and every fused kernel do: a float16 score overflows at
65504 (``q . k`` of two vectors of 256.0 already does), so the oracle must not be the one path
that computes in it. A query row of NaN gives NaN, as on the fused paths; only a row that may
attend to nothing (fully masked) gives 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.attention.problem import Problem, compute_dtype, index_grids


def safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last axis where a row of only ``-inf`` (a query that may attend to
    nothing) gives weights 0 instead of ``0/0 = NaN``, with zero gradient.

    Plain ``softmax`` would return NaN for such a row, and NaN spreads through the backward
    pass to every key of the batch (``0 * NaN = NaN``).
    """
    # "Every key masked", not "no key above -inf": a NaN score must stay NaN (a broken input
    # shows), as on the fused paths, not pass for a masked row.
    row_has_key = ~(scores == float("-inf")).all(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(~row_has_key, 0.0), dim=-1)
    return weights.masked_fill(~row_has_key, 0.0)


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, problem: Problem
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``out (B, Hq, Lq, Dv)``, ``weights (B, Hq, Lq, Lk)`` and ``lse (B, Hq, Lq)``.

    ``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``.
    """
    dtype = compute_dtype(q.dtype)  # float32 for half inputs
    weights, lse = _probabilities(q.to(dtype), k.to(dtype), problem)  # steps 1-6

    # 7. Weighted sum of the values (dropout on the weights while training).
    v = v.to(dtype).repeat_interleave(problem.group, dim=1)  # (B, Hq, Lk, Dv)
    dropped = F.dropout(weights, problem.dropout_p) if problem.dropout_p > 0 else weights
    out = dropped @ v  # (B, Hq, Lq, Dv)
    # A row that may attend nothing gives 0 even where its masked values are NaN (padding
    # never written): weight 0 times NaN would be NaN. Rows with keys keep IEEE's product.
    out.masked_fill_(lse.isneginf()[..., None], 0.0)  # in place: matmul's backward keeps
    # its inputs, not its output, and `atenea cost` measures this path's peak memory
    return out.to(q.dtype), weights.to(q.dtype), lse


def attention_probabilities(q: Tensor, k: Tensor, problem: Problem) -> tuple[Tensor, Tensor]:
    """Steps 1-6: the weights ``(B, Hq, Lq, Lk)`` in ``q``'s dtype and the log-sum-exp
    ``(B, Hq, Lq)`` (float32 for half inputs), differentiable with respect to ``q``, ``k`` and
    the score modifier. Half inputs are computed in float32."""
    dtype = compute_dtype(q.dtype)
    weights, lse = _probabilities(q.to(dtype), k.to(dtype), problem)
    return weights.to(q.dtype), lse


def _probabilities(q: Tensor, k: Tensor, problem: Problem) -> tuple[Tensor, Tensor]:
    p = problem
    # 1. Grouped-query attention: key/value head j serves query heads j*G .. j*G+G-1.
    k = k.repeat_interleave(p.group, dim=1)  # (B, Hq, Lk, D)

    # 2. Scores: how well each query matches each key (a dot product).
    scores = q @ k.transpose(-2, -1)  # (B, Hq, Lq, Lk)

    # 3. Scale by 1/sqrt(D), so the scores do not grow with the head size and saturate the softmax.
    scores = scores * p.scale

    # 4. Score modifier: position biases (ALiBi, relative), soft-capping...
    if p.score_mod is not None:
        q_positions = torch.arange(p.q_len, device=q.device) + p.offset
        k_positions = torch.arange(p.kv_len, device=q.device)
        heads = torch.arange(p.q_heads, device=q.device)
        scores = p.score_mod(scores, *index_grids(p.batch, heads, q_positions, k_positions))

    # 5. Mask: a pair that may not attend (False) gets -inf, so the softmax gives it weight 0.
    if p.mask is not None:
        allowed = p.mask.materialize(p.q_len, p.kv_len, device=q.device)  # (Bm, Hm, Lq, Lk)
        scores = scores.masked_fill(~allowed, float("-inf"))

    # 6. Softmax over the keys: every row becomes a distribution that sums to 1 (or all zeros
    #    for a query that may attend to nothing).
    weights = safe_softmax(scores)
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hq, Lq); -inf for rows with no allowed key
    return weights, lse
