"""The ``"blocks"`` backend: attention one tile at a time, skipping what the mask empties.

The score matrix is cut into tiles (``Q_TILE x K_TILE``). The mask says, per tile, whether it is
EMPTY (skipped: never read, never computed), FULL (computed with no mask at all) or PARTIAL
(computed with a tile-sized boolean mask). For each band of query rows, consecutive tiles of
the same kind are merged into one *segment*: one contiguous key range, one kernel call.

Segments are combined with the log-sum-exp rule of online softmax: if a segment gives output
``o_s`` (softmax-normalised over its own keys) and log-sum-exp ``lse_s``, then over all keys

    lse = log(sum_s exp(lse_s))          out = sum_s exp(lse_s - lse) * o_s

so nothing ``Lq x Lk`` is ever allocated: the largest temporary is one segment.

Two engines compute a segment:

- **fused** (CPU, no score modifier, no dropout): PyTorch's fused flash kernel for CPU, which
  returns the output *and* the log-sum-exp, and whose backward accepts the global output and
  log-sum-exp, so the backward runs segment by segment too.
- **explicit** (score modifiers, dropout, other devices): the same steps written out with
  matmuls on a tile-sized score block.

The backward pass is a custom ``autograd.Function`` that recomputes every segment from the saved
``q, k, v, out, lse`` (as FlashAttention does), so training memory stays of the order of the
inputs, not of ``Lq x Lk``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention.masks import EMPTY, FULL, PARTIAL
from atenea.attention.problem import Problem, compute_dtype, index_grids
from atenea.attention.scores import parameters_of

Q_TILE = 128
K_TILE = 128
# Largest boolean mask (elements) one merged segment may carry: rows x masked columns.
MASK_BUDGET = 1 << 22
# A run of FULL tiles at least this many keys long is computed on its own, without a mask.
LONG_FULL_RUN = 1024
# The explicit engine builds a (B, H, rows, cols) score block: keep its columns bounded.
EXPLICIT_MAX_COLS = 1024

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Segment:
    """Keys ``k_start:k_end`` for query rows ``q_start:q_end``; ``masked`` = needs a mask."""

    q_start: int
    q_end: int
    k_start: int
    k_end: int
    masked: bool


def plan_segments(
    problem: Problem, q_tile: int = Q_TILE, k_tile: int = K_TILE, merge_rows: bool = True
) -> list[list[Segment]]:
    """Group the non-empty tiles into segments, one list per band of query rows.

    A tile counts as FULL only if it is full for every batch row and head, and as EMPTY only if
    it is empty for all of them; anything else is computed with its exact mask.
    """
    p = problem
    n_q = -(-p.q_len // q_tile)
    if p.mask is None:
        kinds = torch.full((n_q, -(-p.kv_len // k_tile)), FULL, dtype=torch.int8)
    else:
        per_row_head = p.mask.tile_kinds(p.q_len, p.kv_len, q_tile, k_tile).flatten(0, 1)
        kinds = torch.where(
            (per_row_head == FULL).all(0),
            FULL,
            torch.where((per_row_head == EMPTY).all(0), EMPTY, PARTIAL),
        ).to(torch.int8)

    # Per band of q_tile rows, the key spans to compute: (first_tile, end_tile, masked).
    bands = [_band_spans(row, k_tile) for row in kinds.tolist()]

    # Merge consecutive bands with the same spans into one call, while their masks stay small.
    plan: list[list[Segment]] = []
    merged, first_row = None, 0
    for tile_row, spans in enumerate(bands + [None]):
        if merged is not None and spans == merged and merge_rows:
            masked_cols = sum(end - first for first, end, masked in spans if masked) * k_tile
            if (tile_row + 1 - first_row) * q_tile * masked_cols <= MASK_BUDGET:
                continue
        if merged:  # a band whose every key is masked has no span: its rows stay 0, lse -inf
            q_start, q_end = first_row * q_tile, min(tile_row * q_tile, p.q_len)
            plan.append(
                [
                    Segment(q_start, q_end, first * k_tile, min(end * k_tile, p.kv_len), masked)
                    for first, end, masked in merged
                ]
            )
        merged, first_row = spans, tile_row
    return plan


def _band_spans(row: list[int], k_tile: int) -> tuple[tuple[int, int, bool], ...]:
    """Key spans of one band from its tile kinds: EMPTY tiles split spans (never computed); a
    long run of FULL tiles is a span of its own, computed without a mask; PARTIAL tiles and short
    FULL runs beside them share one masked call (one bigger kernel call beats several small
    ones plus their merges; the mask itself costs ~5%)."""
    spans: list[tuple[int, int, bool]] = []
    current: list | None = None  # [first_tile, end_tile, masked]
    start = 0
    for kind, group in itertools.groupby(row):
        count = len(list(group))
        long_full = kind == FULL and count * k_tile >= LONG_FULL_RUN
        if kind == EMPTY or long_full:
            if current is not None:
                spans.append(tuple(current))
                current = None
            if long_full:
                spans.append((start, start + count, False))
        elif current is None:
            current = [start, start + count, kind != FULL]
        else:
            current[1] = start + count
            current[2] = current[2] or kind != FULL
        start += count
    if current is not None:
        spans.append(tuple(current))
    return tuple(spans)


# ---------------------------------------------------------------------------------------------
# Pieces shared by both engines
# ---------------------------------------------------------------------------------------------


def _allowed(problem: Problem, seg: Segment, device) -> Tensor:
    """Boolean mask ``(Bm, Hm, rows, cols)`` of a PARTIAL segment; ``True`` = may attend."""
    rows = torch.arange(seg.q_start, seg.q_end, device=device)
    cols = torch.arange(seg.k_start, seg.k_end, device=device)
    return problem.mask.allowed(rows, cols, problem.q_len, problem.kv_len)


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where allowed, -inf elsewhere: the form the fused kernel takes."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, NEG_INF
    )


def _merge(acc_out: Tensor, acc_lse: Tensor, out: Tensor, lse: Tensor) -> tuple[Tensor, Tensor]:
    """Online-softmax combination of two partial results over disjoint key sets.

    ``out (B, H, rows, Dv)`` normalised over its own keys, ``lse (B, H, rows)``. A row with no
    key in either part keeps lse ``-inf`` and output 0 (never ``exp(-inf - -inf) = NaN``).
    """
    total = torch.logaddexp(acc_lse, lse)
    safe_total = total.masked_fill(total == NEG_INF, 0.0)
    old_weight = torch.exp(acc_lse - safe_total).unsqueeze(-1)
    new_weight = torch.exp(lse - safe_total).unsqueeze(-1)
    return acc_out * old_weight + out * new_weight, total


def _split_cols(seg: Segment, max_cols: int) -> list[Segment]:
    """Cut a segment into pieces of at most ``max_cols`` keys (explicit engine memory bound)."""
    return [
        Segment(seg.q_start, seg.q_end, start, min(start + max_cols, seg.k_end), seg.masked)
        for start in range(seg.k_start, seg.k_end, max_cols)
    ]


def _dropout_keep(seed: int, seg: Segment, shape, device, p_drop: float) -> Tensor:
    """The dropout keep-mask of one segment, reproducible from ``(seed, segment)`` so the
    backward pass regenerates exactly the mask the forward pass used."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + seg.q_start * 65_537 + seg.k_start) % (2**63 - 1))
    return torch.rand(shape, generator=generator, device=device) >= p_drop


# ---------------------------------------------------------------------------------------------
# Explicit engine: scores written out per segment
# ---------------------------------------------------------------------------------------------


def _scores(q_rows: Tensor, k_cols: Tensor, problem: Problem, seg: Segment) -> Tensor:
    """Raw scaled scores ``(B, Hq, rows, cols)``; grouped heads share their key head
    (``q`` viewed as ``(B, Hkv, G, rows, D)``, so keys are never copied per query head)."""
    p = problem
    batch, rows = q_rows.shape[0], q_rows.shape[2]
    q5 = q_rows.reshape(batch, p.kv_heads, p.group, rows, p.head_dim)
    scores = q5 @ k_cols.unsqueeze(2).transpose(-2, -1)  # (B, Hkv, G, rows, cols)
    return scores.reshape(batch, p.q_heads, rows, -1) * p.scale


def _modify(scores: Tensor, problem: Problem, seg: Segment) -> Tensor:
    p = problem
    device = scores.device
    q_positions = torch.arange(seg.q_start, seg.q_end, device=device) + p.offset
    k_positions = torch.arange(seg.k_start, seg.k_end, device=device)
    heads = torch.arange(p.q_heads, device=device)
    return p.score_mod(scores, *index_grids(p.batch, heads, q_positions, k_positions))


def _weighted_values(weights: Tensor, v_cols: Tensor, problem: Problem) -> Tensor:
    """``weights (B, Hq, rows, cols) @ v (B, Hkv, cols, Dv)`` with grouped heads."""
    p = problem
    batch, rows = weights.shape[0], weights.shape[2]
    w5 = weights.reshape(batch, p.kv_heads, p.group, rows, -1)
    return (w5 @ v_cols.unsqueeze(2)).reshape(batch, p.q_heads, rows, -1)


def _explicit_forward(q, k, v, problem: Problem, seg: Segment, seed: int):
    p = problem
    q_rows = q[:, :, seg.q_start : seg.q_end]
    scores = _scores(q_rows, k[:, :, seg.k_start : seg.k_end], p, seg)
    if p.score_mod is not None:
        scores = _modify(scores, p, seg)
    if seg.masked:
        scores = scores.masked_fill(~_allowed(p, seg, q.device), NEG_INF)
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hq, rows)
    weights = torch.exp(scores - lse.masked_fill(lse == NEG_INF, 0.0).unsqueeze(-1))
    if p.dropout_p > 0:
        keep = _dropout_keep(seed, seg, weights.shape, q.device, p.dropout_p)
        weights = weights * keep / (1.0 - p.dropout_p)
    return _weighted_values(weights, v[:, :, seg.k_start : seg.k_end], p), lse


def _explicit_backward(q, k, v, grad_out, lse_bwd, delta, problem, seg, seed, grads, params):
    """Add this segment's contribution to ``grads = [dq, dk, dv, *dparams]``.

    Softmax backward with the global log-sum-exp and ``delta = rowsum(dO * O)``:
    ``P = exp(S - lse)``, ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - delta)``.
    """
    p = problem
    rows, cols = slice(seg.q_start, seg.q_end), slice(seg.k_start, seg.k_end)
    q_rows, k_cols, v_cols = q[:, :, rows], k[:, :, cols], v[:, :, cols]
    raw = _scores(q_rows, k_cols, p, seg)
    if p.score_mod is not None:
        with torch.enable_grad():
            raw = raw.detach().requires_grad_(True)
            modified = _modify(raw, p, seg)
    else:
        modified = raw
    scores = modified.detach()
    if seg.masked:
        scores = scores.masked_fill(~_allowed(p, seg, q.device), NEG_INF)
    weights = torch.exp(scores - lse_bwd[:, :, rows].unsqueeze(-1))  # (B, Hq, rows, cols)

    grad_rows = grad_out[:, :, rows]
    batch, n_rows = q_rows.shape[0], q_rows.shape[2]
    grad_weights = (
        grad_rows.reshape(batch, p.kv_heads, p.group, n_rows, -1)
        @ v_cols.unsqueeze(2).transpose(-2, -1)
    ).reshape(batch, p.q_heads, n_rows, -1)  # dO V^T
    if p.dropout_p > 0:
        keep = _dropout_keep(seed, seg, weights.shape, q.device, p.dropout_p)
        dropped = weights * keep / (1.0 - p.dropout_p)
        grad_weights = grad_weights * keep / (1.0 - p.dropout_p)
    else:
        dropped = weights
    # dV = P^T dO, summed over the query heads of each group
    grads[2][:, :, cols] += (
        dropped.reshape(batch, p.kv_heads, p.group, n_rows, -1).transpose(-2, -1)
        @ grad_rows.reshape(batch, p.kv_heads, p.group, n_rows, -1)
    ).sum(2)
    grad_scores = weights * (grad_weights - delta[:, :, rows].unsqueeze(-1))
    if p.score_mod is not None:
        wanted = [raw, *params]
        found = torch.autograd.grad(modified, wanted, grad_scores, allow_unused=True)
        grad_scores = found[0]
        for i, g in enumerate(found[1:]):
            if g is not None:
                grads[3 + i] += g
    grad_scores = grad_scores * p.scale
    g5 = grad_scores.reshape(batch, p.kv_heads, p.group, n_rows, -1)
    grads[0][:, :, rows] += (g5 @ k_cols.unsqueeze(2)).reshape(batch, p.q_heads, n_rows, -1)
    grads[1][:, :, cols] += (
        g5.transpose(-2, -1) @ q_rows.reshape(batch, p.kv_heads, p.group, n_rows, -1)
    ).sum(2)


# ---------------------------------------------------------------------------------------------
# Fused engine: PyTorch's CPU flash kernel per segment
# ---------------------------------------------------------------------------------------------

_fused_forward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_fused_backward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _fused_forward(q, k, v, problem: Problem, seg: Segment):
    p = problem
    cols = slice(seg.k_start, seg.k_end)
    bias, empty_rows = None, None
    if seg.masked:
        allowed = _allowed(p, seg, q.device)
        bias = _additive(allowed, q.dtype)
        empty_rows = ~allowed.any(-1)  # (Bm, Hm, rows): the kernel reports lse 0 for these
    out, lse = _fused_forward_op(
        q[:, :, seg.q_start : seg.q_end],
        k[:, :, cols],
        v[:, :, cols],
        0.0,
        False,
        attn_mask=bias,
        scale=p.scale,
    )
    if empty_rows is not None:
        lse = lse.masked_fill(empty_rows, NEG_INF)
    return out, lse


def _fused_backward(q, k, v, out, grad_out, lse_bwd, problem: Problem, seg: Segment, grads):
    p = problem
    rows, cols = slice(seg.q_start, seg.q_end), slice(seg.k_start, seg.k_end)
    bias = _additive(_allowed(p, seg, q.device), q.dtype) if seg.masked else None
    dq, dk, dv = _fused_backward_op(
        grad_out[:, :, rows],
        q[:, :, rows],
        k[:, :, cols],
        v[:, :, cols],
        out[:, :, rows],
        lse_bwd[:, :, rows],
        0.0,
        False,
        attn_mask=bias,
        scale=p.scale,
    )
    grads[0][:, :, rows] += dq
    grads[1][:, :, cols] += dk
    grads[2][:, :, cols] += dv


def _uses_fused(q: Tensor, problem: Problem) -> bool:
    return (
        q.device.type == "cpu"
        and problem.score_mod is None
        and problem.dropout_p == 0.0
        and problem.head_dim == problem.value_dim
    )


# ---------------------------------------------------------------------------------------------
# The autograd function and the backend entry point
# ---------------------------------------------------------------------------------------------


def _forward_all(q, k, v, problem: Problem, plan, seed: int) -> tuple[Tensor, Tensor]:
    """Run every segment of the plan. Returns ``out (B, Hq, Lq, Dv)`` and ``lse (B, Hq, Lq)``,
    both in the compute dtype."""
    p = problem
    fused = _uses_fused(q, p)
    out = q.new_empty(p.batch, p.q_heads, p.q_len, p.value_dim)
    lse = q.new_full((p.batch, p.q_heads, p.q_len), NEG_INF)
    covered = 0  # bands come in order; rows between them have no allowed key at all
    for band in plan:
        out[:, :, covered : band[0].q_start] = 0.0
        covered = band[0].q_end
        rows = slice(band[0].q_start, band[0].q_end)
        acc_out, acc_lse = None, None
        for seg in band:
            pieces = [seg] if fused else _split_cols(seg, EXPLICIT_MAX_COLS)
            for piece in pieces:
                if fused:
                    part_out, part_lse = _fused_forward(q, k, v, p, piece)
                else:
                    part_out, part_lse = _explicit_forward(q, k, v, p, piece, seed)
                if acc_out is None:
                    acc_out, acc_lse = part_out, part_lse
                else:
                    acc_out, acc_lse = _merge(acc_out, acc_lse, part_out, part_lse)
        out[:, :, rows] = acc_out
        lse[:, :, rows] = acc_lse
    out[:, :, covered:] = 0.0
    return out, lse


class _BlocksFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, problem, plan, seed, *params):
        out, lse = _forward_all(q, k, v, problem, plan, seed)
        ctx.save_for_backward(q, k, v, out, lse, *params)
        ctx.problem, ctx.plan, ctx.seed = problem, plan, seed
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        q, k, v, out, lse, *params = ctx.saved_tensors
        p, plan, seed = ctx.problem, ctx.plan, ctx.seed
        grad_out = grad_out.contiguous()
        # A row with no allowed key has lse -inf; +inf makes exp(s - lse) = 0 there, not NaN.
        lse_bwd = lse.masked_fill(lse == NEG_INF, float("inf"))
        grads = [torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)]
        grads += [torch.zeros_like(param) for param in params]
        fused = _uses_fused(q, p)
        delta = None if fused else (grad_out * out).sum(-1)  # (B, Hq, Lq)
        for band in plan:
            for seg in band:
                if fused:
                    _fused_backward(q, k, v, out, grad_out, lse_bwd, p, seg, grads)
                else:
                    for piece in _split_cols(seg, EXPLICIT_MAX_COLS):
                        _explicit_backward(
                            q, k, v, grad_out, lse_bwd, delta, p, piece, seed, grads, params
                        )
        return (grads[0], grads[1], grads[2], None, None, None, *grads[3:])


def blocks_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    problem: Problem,
    q_tile: int = Q_TILE,
    k_tile: int = K_TILE,
) -> tuple[Tensor, Tensor]:
    """Tiled attention. Returns ``out (B, Hq, Lq, Dv)`` in ``q``'s dtype and the log-sum-exp
    ``(B, Hq, Lq)`` in the compute dtype (float32, or float64 for float64 inputs)."""
    p = problem
    dtype = compute_dtype(q.dtype)
    q_c, k_c, v_c = q.to(dtype), k.to(dtype), v.to(dtype)
    plan = plan_segments(p, q_tile, k_tile, merge_rows=_uses_fused(q, p))
    seed = int(torch.randint(0, 2**62, ())) if p.dropout_p > 0 else 0
    out, lse = _BlocksFunction.apply(q_c, k_c, v_c, p, plan, seed, *parameters_of(p.score_mod))
    return out.to(q.dtype), lse


@torch.no_grad()
def log_sum_exp(q: Tensor, k: Tensor, problem: Problem) -> Tensor:
    """Row log-sum-exp ``(B, Hq, Lq)`` of the masked, modified scores, segment by segment, for
    paths whose kernel does not report it. Float32 (float64 for float64 inputs)."""
    p = problem
    dtype = compute_dtype(q.dtype)
    q, k = q.to(dtype), k.to(dtype)
    lse = q.new_full((p.batch, p.q_heads, p.q_len), NEG_INF)
    for band in plan_segments(p, merge_rows=False):
        rows = slice(band[0].q_start, band[0].q_end)
        for seg in band:
            for piece in _split_cols(seg, EXPLICIT_MAX_COLS):
                scores = _scores(q[:, :, rows], k[:, :, piece.k_start : piece.k_end], p, piece)
                if p.score_mod is not None:
                    scores = _modify(scores, p, piece)
                if piece.masked:
                    scores = scores.masked_fill(~_allowed(p, piece, q.device), NEG_INF)
                lse[:, :, rows] = torch.logaddexp(lse[:, :, rows], torch.logsumexp(scores, -1))
    return lse
