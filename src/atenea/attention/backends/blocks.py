"""The ``"blocks"`` backend: attention one tile at a time, skipping what the mask empties.

``plan.py`` cuts the score matrix into tiles and decides what to compute: EMPTY tiles are
skipped (never read, never computed), FULL tiles run without a mask, PARTIAL tiles with a
tile-sized boolean mask, and equal-shaped spans at a regular step run as one batched call.

Partial results over disjoint key sets are combined with the log-sum-exp rule of online
softmax: if a part gives output ``o_s`` (normalised over its own keys) and log-sum-exp
``lse_s``, then over all keys

    lse = log(sum_s exp(lse_s))          out = sum_s exp(lse_s - lse) * o_s

so nothing ``Lq x Lk`` is ever allocated.

Two engines compute the parts:

- **fused** (CPU, no score modifier, no dropout): PyTorch's fused flash kernel for CPU, which
  returns the output *and* the log-sum-exp; its backward accepts the *global* output and
  log-sum-exp, so the backward runs part by part too.
- **explicit** (``explicit.py``: score modifiers, dropout, other devices): the same steps
  written out with matmuls on one segment's score block.

The backward pass is a custom ``autograd.Function`` that recomputes every part from the saved
``q, k, v, out, lse`` (as FlashAttention does): training memory stays of the order of the
inputs, not of ``Lq x Lk``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.attention.backends import explicit
from atenea.attention.backends.guards import keep_nan_queries
from atenea.attention.backends.plan import K_TILE, Q_TILE, Group, plan_groups
from atenea.attention.problem import Problem, compute_dtype
from atenea.attention.scores import parameters_of

NEG_INF = float("-inf")

_fused_forward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_fused_backward_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def merge(acc_out: Tensor, acc_lse: Tensor, out: Tensor, lse: Tensor) -> tuple[Tensor, Tensor]:
    """Online-softmax combination of two partial results over disjoint key sets.

    ``out (..., rows, Dv)`` normalised over its own keys, ``lse (..., rows)``. A row with no key
    in either part keeps lse ``-inf`` and output 0 (never ``exp(-inf - -inf) = NaN``).
    """
    total = torch.logaddexp(acc_lse, lse)
    safe_total = total.masked_fill(total == NEG_INF, 0.0)
    old_weight = torch.exp(acc_lse - safe_total).unsqueeze(-1)
    new_weight = torch.exp(lse - safe_total).unsqueeze(-1)
    return acc_out * old_weight + out * new_weight, total


# ---------------------------------------------------------------------------------------------
# Groups as batched strided views
# ---------------------------------------------------------------------------------------------


def window_view(x: Tensor, start: int, size: int, step: int, count: int) -> Tensor:
    """Rows ``start + i*step .. + size`` of ``x (B, H, L, X)`` for ``i < count``, as a view
    ``(B, count, H, size, X)``. ``step = 0`` repeats the same rows."""
    if step == 0 or count == 1:
        rows = x[:, :, start : start + size].unsqueeze(1)
        return rows.expand(-1, count, -1, -1, -1)
    stretch = x[:, :, start : start + (count - 1) * step + size]
    return stretch.unfold(2, size, step).permute(0, 2, 1, 4, 3)  # (B, count, H, size, X)


def _windows(x: Tensor, group: Group, of_queries: bool) -> Tensor:
    """A group's query rows (or key rows) stacked as a batch ``(B*count, H, size, X)``
    (a view when ``B == 1``, a copy otherwise)."""
    if of_queries:
        view = window_view(x, group.q_start, group.rows, group.q_step, group.count)
    else:
        view = window_view(x, group.k_start, group.cols, group.k_step, group.count)
    return view.reshape(-1, *view.shape[2:])


def _group_bias(problem: Problem, group: Group, batch: int, device, dtype):
    """Additive mask (0 / -inf) for a masked group, broadcastable to ``(B*count, H, rows,
    cols)``, and the rows with no allowed key at all (``(.., H|1, rows)``), or ``(None, None)``.
    Members whose masks are equal (a window, a diagonal, the same place in every document)
    share one tile."""
    if not group.masked:
        return None, None
    members = list(group.members())
    first = explicit.allowed(problem, members[0], device)  # (Bm, Hm, rows, cols)
    same_distance = group.q_step == group.k_step  # every member equally far from the diagonal
    if (problem.mask.shift_invariant and same_distance) or all(
        torch.equal(explicit.allowed(problem, m, device), first) for m in members[1:]
    ):
        if first.shape[0] == 1:
            allowed = first
        else:  # one tile per batch row, repeated for every member
            allowed = first.unsqueeze(1).expand(-1, group.count, -1, -1, -1).flatten(0, 1)
    else:
        stacked = torch.stack([explicit.allowed(problem, m, device) for m in members], dim=1)
        allowed = stacked.expand(batch, -1, -1, -1, -1).flatten(0, 1)  # (B*count, Hm, r, c)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, NEG_INF)
    return bias, ~allowed.any(-1)


def _fused_forward_group(q, k, v, out, lse, problem: Problem, group: Group, fresh: bool) -> None:
    """Run one group on the fused kernel and write (``fresh``: nothing there yet) or merge its
    result into ``out``/``lse`` in place."""
    batch = q.shape[0]
    bias, empty_rows = _group_bias(problem, group, batch, q.device, q.dtype)
    part_out, part_lse = _fused_forward_op(
        _windows(q, group, True), _windows(k, group, False), _windows(v, group, False),
        0.0, False, attn_mask=bias, scale=problem.scale,
    )  # fmt: skip
    if empty_rows is not None:  # the kernel reports lse 0 for a row with no allowed key
        part_lse = part_lse.masked_fill(empty_rows, NEG_INF)
    part_out = part_out.view(batch, group.count, *part_out.shape[1:])
    part_lse = part_lse.view(part_out.shape[:-1])
    out_view = window_view(out, group.q_start, group.rows, group.q_step, group.count)
    lse_view = window_view(lse.unsqueeze(-1), group.q_start, group.rows, group.q_step, group.count)
    if not fresh:
        part_out, part_lse = merge(out_view, lse_view.squeeze(-1), part_out, part_lse)
    out_view.copy_(part_out)
    lse_view.copy_(part_lse.unsqueeze(-1))


def _scatter_add_keys(grad: Tensor, part: Tensor, group: Group) -> None:
    """Add a group's key gradients ``(B*count, Hkv, cols, X)`` into ``grad (B, Hkv, Lk, X)``;
    members may share keys (overlapping windows), so this is an index_add, not a view."""
    batch = grad.shape[0]
    index = (
        torch.arange(group.count, device=grad.device).unsqueeze(1) * group.k_step
        + torch.arange(group.k_start, group.k_start + group.cols, device=grad.device)
    ).flatten()  # (count * cols,)
    part = part.view(batch, group.count, *part.shape[1:]).transpose(1, 2).flatten(2, 3)
    grad.index_add_(2, index, part)


def _fused_backward_group(q, k, v, out, grad_out, lse_bwd, problem: Problem, group: Group, grads):
    batch = q.shape[0]
    bias, _ = _group_bias(problem, group, batch, q.device, q.dtype)
    lse_rows = _windows(lse_bwd.unsqueeze(-1), group, True).squeeze(-1)
    dq, dk, dv = _fused_backward_op(
        _windows(grad_out, group, True), _windows(q, group, True), _windows(k, group, False),
        _windows(v, group, False), _windows(out, group, True), lse_rows,
        0.0, False, attn_mask=bias, scale=problem.scale,
    )  # fmt: skip
    dq_view = window_view(grads[0], group.q_start, group.rows, group.q_step, group.count)
    dq_view += dq.view(batch, group.count, *dq.shape[1:])  # members own disjoint query rows
    _scatter_add_keys(grads[1], dk, group)
    _scatter_add_keys(grads[2], dv, group)


def _fused_possible(q: Tensor, problem: Problem) -> bool:
    """The fused kernel runs on the CPU, without score modifiers or dropout."""
    return q.device.type == "cpu" and problem.score_mod is None and problem.dropout_p == 0.0


def _uses_fused(q: Tensor, problem: Problem) -> bool:
    return _fused_possible(q, problem) and problem.head_dim == problem.value_dim


# ---------------------------------------------------------------------------------------------
# The autograd function and the backend entry point
# ---------------------------------------------------------------------------------------------


def _forward(q, k, v, problem: Problem, plan: list[Group], seed: int) -> tuple[Tensor, Tensor]:
    """Every group of the plan. Returns ``out (B, Hq, Lq, Dv)`` and ``lse (B, Hq, Lq)`` in the
    compute dtype; rows no group covers keep output 0 and lse ``-inf``."""
    p = problem
    lse = q.new_full((p.batch, p.q_heads, p.q_len), NEG_INF)
    if _uses_fused(q, p):
        out = q.new_empty(p.batch, p.q_heads, p.q_len, p.value_dim)
        written: set[int] = set()  # first rows of the bands some group has written
        for group in plan:
            starts = {member.q_start for member in group.members()}
            fresh = starts.isdisjoint(written)
            if not fresh:  # merging: rows seen for the first time must hold a real zero
                for start in starts - written:
                    out[:, :, start : start + group.rows] = 0.0
            _fused_forward_group(q, k, v, out, lse, p, group, fresh)
            written |= starts
        return out.masked_fill_((lse == NEG_INF).unsqueeze(-1), 0.0), lse
    out = q.new_zeros(p.batch, p.q_heads, p.q_len, p.value_dim)
    for group in plan:
        for seg in group.members():
            rows = slice(seg.q_start, seg.q_end)
            for piece in explicit.split_cols(seg):
                part_out, part_lse = explicit.segment_forward(q, k, v, p, piece, seed)
                out[:, :, rows], lse[:, :, rows] = merge(
                    out[:, :, rows], lse[:, :, rows], part_out, part_lse
                )
    return out, lse


class _BlocksFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, problem, plan, seed, *params):
        out, lse = _forward(q, k, v, problem, plan, seed)
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
        if _uses_fused(q, p):
            for group in plan:
                _fused_backward_group(q, k, v, out, grad_out, lse_bwd, p, group, grads)
        else:
            delta = (grad_out * out).sum(-1)  # (B, Hq, Lq)
            for group in plan:
                for seg in group.members():
                    for piece in explicit.split_cols(seg):
                        explicit.segment_backward(
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
    if p.head_dim != p.value_dim and _fused_possible(q, p):
        # The fused kernel wants one head size: zero columns change neither q . k nor the
        # kept output columns (the scale stays 1/sqrt(D) of the real D, fixed in problem).
        width = max(p.head_dim, p.value_dim)
        q_c, k_c = F.pad(q_c, (0, width - p.head_dim)), F.pad(k_c, (0, width - p.head_dim))
        v_c = F.pad(v_c, (0, width - p.value_dim))
        p = replace(p, head_dim=width, value_dim=width)
    plan = plan_groups(p, q_tile, k_tile, batch=p.batch)
    seed = int(torch.randint(0, 2**62, ())) if p.dropout_p > 0 else 0
    out, lse = _BlocksFunction.apply(q_c, k_c, v_c, p, plan, seed, *parameters_of(p.score_mod))
    out = out[..., : problem.value_dim].to(q.dtype)
    if _uses_fused(q, p):  # the CPU flash kernel writes 0 for a NaN query
        out = keep_nan_queries(q, out)
    return out, lse
