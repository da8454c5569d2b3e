"""The explicit tile engine of the ``"blocks"`` backend: attention steps written out with
matmuls on one segment's score block ``(B, Hq, rows, cols)``.

Used where the fused kernel cannot go: score modifiers (evaluated per tile, so no ``L x L``
bias), dropout (a keep-mask regenerated from a seed in the backward pass), and devices other
than the CPU. Grouped heads share their key head: ``q`` is viewed as ``(B, Hkv, G, rows, D)``,
so keys are never copied per query head.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.attention.backends.plan import Segment, plan_segments
from atenea.attention.problem import Problem, compute_dtype, index_grids

# Columns of one score block: bounds the engine's memory to B x H x rows x MAX_COLS.
MAX_COLS = 1024
NEG_INF = float("-inf")


def split_cols(seg: Segment, max_cols: int = MAX_COLS) -> list[Segment]:
    """Cut a segment into pieces of at most ``max_cols`` keys."""
    return [
        Segment(seg.q_start, seg.q_end, start, min(start + max_cols, seg.k_end), seg.masked)
        for start in range(seg.k_start, seg.k_end, max_cols)
    ]


def allowed(problem: Problem, seg: Segment, device) -> Tensor:
    """Boolean mask ``(Bm, Hm, rows, cols)`` of a segment; ``True`` = may attend."""
    rows = torch.arange(seg.q_start, seg.q_end, device=device)
    cols = torch.arange(seg.k_start, seg.k_end, device=device)
    return problem.mask.allowed(rows, cols, problem.q_len, problem.kv_len)


def _by_group(t: Tensor, problem: Problem) -> Tensor:
    """``(B, Hq, rows, X)`` viewed as ``(B, Hkv, G, rows, X)``."""
    p = problem
    return t.reshape(t.shape[0], p.kv_heads, p.group, t.shape[2], t.shape[3])


def _scores(q_rows: Tensor, k_cols: Tensor, problem: Problem) -> Tensor:
    """Raw scaled scores ``(B, Hq, rows, cols)``."""
    scores = _by_group(q_rows, problem) @ k_cols.unsqueeze(2).transpose(-2, -1)
    return scores.flatten(1, 2) * problem.scale


def _modify(scores: Tensor, problem: Problem, seg: Segment) -> Tensor:
    p = problem
    device = scores.device
    q_positions = torch.arange(seg.q_start, seg.q_end, device=device) + p.offset
    k_positions = torch.arange(seg.k_start, seg.k_end, device=device)
    heads = torch.arange(p.q_heads, device=device)
    return p.score_mod(scores, *index_grids(p.batch, heads, q_positions, k_positions))


def _dropout_keep(seed: int, seg: Segment, shape, device, p_drop: float) -> Tensor:
    """The dropout keep-mask of one segment, reproducible from ``(seed, segment)`` so the
    backward pass regenerates exactly the mask the forward pass used."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + seg.q_start * 65_537 + seg.k_start) % (2**63 - 1))
    return torch.rand(shape, generator=generator, device=device) >= p_drop


def _masked_scores(q, k, problem: Problem, seg: Segment) -> Tensor:
    """Scores of a segment after the score modifier and the mask (``-inf`` where masked)."""
    scores = _scores(q[:, :, seg.q_start : seg.q_end], k[:, :, seg.k_start : seg.k_end], problem)
    if problem.score_mod is not None:
        scores = _modify(scores, problem, seg)
    if seg.masked:
        scores = scores.masked_fill(~allowed(problem, seg, q.device), NEG_INF)
    return scores


def segment_forward(q, k, v, problem: Problem, seg: Segment, seed: int) -> tuple[Tensor, Tensor]:
    """Output ``(B, Hq, rows, Dv)`` normalised over this segment's keys, and its log-sum-exp."""
    p = problem
    scores = _masked_scores(q, k, p, seg)
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hq, rows)
    weights = torch.exp(scores - lse.masked_fill(lse == NEG_INF, 0.0).unsqueeze(-1))
    if p.dropout_p > 0:
        keep = _dropout_keep(seed, seg, weights.shape, q.device, p.dropout_p)
        weights = weights * keep / (1.0 - p.dropout_p)
    v_cols = v[:, :, seg.k_start : seg.k_end]
    return (_by_group(weights, p) @ v_cols.unsqueeze(2)).flatten(1, 2), lse


def segment_backward(q, k, v, grad_out, lse_bwd, delta, problem, seg, seed, grads, params):
    """Add this segment's contribution to ``grads = [dq, dk, dv, *dparams]``.

    Softmax backward with the global log-sum-exp and ``delta = rowsum(dO * O)``:
    ``P = exp(S - lse)``, ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - delta)``.
    """
    p = problem
    rows, cols = slice(seg.q_start, seg.q_end), slice(seg.k_start, seg.k_end)
    q_rows, k_cols, v_cols = q[:, :, rows], k[:, :, cols], v[:, :, cols]
    raw = _scores(q_rows, k_cols, p)
    if p.score_mod is not None:
        with torch.enable_grad():
            raw = raw.detach().requires_grad_(True)
            modified = _modify(raw, p, seg)
    else:
        modified = raw
    scores = modified.detach()
    if seg.masked:
        scores = scores.masked_fill(~allowed(p, seg, q.device), NEG_INF)
    weights = torch.exp(scores - lse_bwd[:, :, rows].unsqueeze(-1))  # (B, Hq, rows, cols)

    grad_rows = grad_out[:, :, rows]
    grad_weights = (_by_group(grad_rows, p) @ v_cols.unsqueeze(2).transpose(-2, -1)).flatten(1, 2)
    dropped = weights
    if p.dropout_p > 0:
        keep = _dropout_keep(seed, seg, weights.shape, q.device, p.dropout_p) / (1.0 - p.dropout_p)
        dropped, grad_weights = weights * keep, grad_weights * keep
    # dV = P^T dO, summed over the query heads of each group
    grads[2][:, :, cols] += (_by_group(dropped, p).transpose(-2, -1) @ _by_group(grad_rows, p)).sum(
        2
    )
    grad_scores = weights * (grad_weights - delta[:, :, rows].unsqueeze(-1))
    if p.score_mod is not None:
        found = torch.autograd.grad(modified, [raw, *params], grad_scores, allow_unused=True)
        grad_scores = found[0]
        for i, g in enumerate(found[1:]):
            if g is not None:
                grads[3 + i] += g
    g5 = _by_group(grad_scores * p.scale, p)  # (B, Hkv, G, rows, cols)
    grads[0][:, :, rows] += (g5 @ k_cols.unsqueeze(2)).flatten(1, 2)
    grads[1][:, :, cols] += (g5.transpose(-2, -1) @ _by_group(q_rows, p)).sum(2)


@torch.no_grad()
def log_sum_exp(q: Tensor, k: Tensor, problem: Problem) -> Tensor:
    """Row log-sum-exp ``(B, Hq, Lq)`` of the masked, modified scores, segment by segment, for
    paths whose kernel does not report it. Float32 (float64 for float64 inputs)."""
    p = problem
    dtype = compute_dtype(q.dtype)
    q, k = q.to(dtype), k.to(dtype)
    lse = q.new_full((p.batch, p.q_heads, p.q_len), NEG_INF)
    for seg in plan_segments(p):
        for piece in split_cols(seg):
            rows = slice(piece.q_start, piece.q_end)
            piece_lse = torch.logsumexp(_masked_scores(q, k, p, piece), -1)
            lse[:, :, rows] = torch.logaddexp(lse[:, :, rows], piece_lse)
    return lse
