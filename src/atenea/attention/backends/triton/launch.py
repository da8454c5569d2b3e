"""Launching the kernels, and the ``autograd.Function`` that ties forward and backward.

Everything a kernel reads besides Q/K/V and the dropout seed comes from a ``Plan``: the tile
lists (expanded to the call's batch and heads at stride 0 where the mask broadcasts), the mask
plan, the score modifier plan, the block sizes, and the launch arguments made from them. A plan
is made once and reused by every later call alike (``triton.plan_call``): at 4k tokens a call's
host time is as long as its kernels, so what can be made once is (``benchmarks/triton_host.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

import triton
from atenea.attention.backends.tile_lists import TileLists
from atenea.attention.backends.triton.backward import (
    attention_backward_delta,
    attention_backward_kv,
)
from atenea.attention.backends.triton.backward_q import attention_backward_q
from atenea.attention.backends.triton.configs import BackwardConfig, ForwardConfig, padded_dim
from atenea.attention.backends.triton.forward import attention_forward
from atenea.attention.backends.triton.plan import MaskPlan, ModPlan, modifier_paths
from atenea.attention.backends.triton.rules import INTERPRETED
from atenea.attention.problem import Problem


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors and dicts
class Plan:
    """What a call's kernels take besides q, k, v and its dropout seed: the tile lists each pass
    walks, the mask and score-modifier plans, the block sizes, and the launch arguments that
    follow from them, ready to pass. Made once per lists and sizes and reused by later calls
    without a modifier holding tensors (``triton.plan_call``): a training step or a
    benchmark's call then builds none of it again."""

    lists: TileLists  # what the forward and dQ passes walk
    lists_kv: TileLists  # whose transpose the dK/dV pass walks (``TileLists.edges_partial``)
    forward: ForwardConfig
    backward: BackwardConfig
    batch: int
    heads: int  # query heads: the lists are expanded to ``(batch, heads)``
    # the arguments after the lists, up to the seed: the mask's and modifiers' (``shared_args``)
    args: tuple
    constants: dict  # the constexprs the three kernels share, the switches among them
    pack: int = 1  # query heads the dK/dV pass takes in one step (``pack_of``)
    even: bool = False  # the passes skip the full tiles' bounds (``skips_bounds``)

    @property
    def lists_t(self) -> TileLists:
        """Per key tile, the query tiles visiting it (the dK/dV pass's lists; remembered on
        the lists, built only when a backward needs them)."""
        return self.lists_kv.transposed()

    @functools.cached_property
    def walk(self) -> list:
        """The forward's and dQ's lists as launch arguments (``_expanded``)."""
        return _expanded(self.lists, self.batch, self.heads)

    @functools.cached_property
    def walk_kv(self) -> list:
        """The dK/dV pass's lists as launch arguments, made at the first backward."""
        return _expanded(self.lists_t, self.batch, self.heads)


@dataclass
class Setup:
    """One call: its sizes and options, its plan, and its dropout seed (Philox's key, drawn
    from torch's generator per call; 0 without dropout)."""

    problem: Problem
    plan: Plan
    seed: int = 0


def _expanded(lists: TileLists, batch: int, heads: int) -> list:
    """Counts/indices broadcast to ``(B, Hq, ...)`` and their strides (0 where broadcast)."""
    pc = lists.partial_counts.expand(batch, heads, -1)
    pi = lists.partial_indices.expand(batch, heads, -1, -1)
    fc = lists.full_counts.expand(batch, heads, -1)
    fi = lists.full_indices.expand(batch, heads, -1, -1)
    return [pc, pi, fc, fi, pc.stride(0), pc.stride(1), pi.stride(0), pi.stride(1), pi.stride(2)]


@functools.cache
def _dummies(device: torch.device) -> tuple[Tensor, Tensor]:
    """Stand-ins for pointers a call does not use (their constexpr is off: never read), made
    once per device rather than at every launch."""
    return (torch.zeros(1, dtype=torch.int32, device=device),
            torch.zeros(1, dtype=torch.float32, device=device))  # fmt: skip


def shared_args(
    p: Problem, lists: TileLists, mask: MaskPlan, mods: ModPlan, paths: dict,
    relative: Tensor | None, device,
) -> tuple[tuple, dict]:  # fmt: skip
    """The arguments after the lists (up to the seed and dropout's rate, which each launch
    adds), and the constexprs, shared by the three kernels: ``Plan.args`` and
    ``Plan.constants``."""
    m = mask
    dummy, dummy_float = _dummies(torch.device(device))

    def broadcast_strides(t: Tensor) -> list[int]:  # the mask's size-1 batch/heads: stride 0
        return [s if n > 1 else 0 for s, n in zip(t.stride(), t.shape)]

    def row_tensor(t):
        return (t, broadcast_strides(t)[0]) if t is not None else (dummy, 0)

    index = m.bitmap_index
    index_strides = broadcast_strides(index) if index is not None else [0, 0, 0, 0]
    args = (
        p.q_len, p.kv_len, p.head_dim, p.value_dim, p.scale, m.window,
        *row_tensor(m.document), *row_tensor(m.padding), *row_tensor(m.prefix),
        *row_tensor(m.live_keys),
        m.bitmaps if m.bitmaps is not None else dummy,
        index if index is not None else dummy, *index_strides,
        mods.alibi_slopes if mods.alibi_slopes is not None else dummy_float,
        relative if relative is not None else dummy_float,
        relative.stride(0) if relative is not None else 0,
        mods.cap if mods.cap > 0 else 1.0,
    )  # fmt: skip
    constants = dict(
        GROUP=p.group,
        BLOCK_D=padded_dim(p.head_dim),
        BLOCK_DV=padded_dim(p.value_dim),
        SPARSE_Q=lists.q_tile,
        SPARSE_K=lists.k_tile,
        **paths,
        ALIBI_SYMMETRIC=mods.alibi_symmetric,
        UPCAST=INTERPRETED,
        # fp32 inputs: exact fp32 products (the GPU would round them to TF32 otherwise); the
        # small float32 blocks of configs.row_bytes keep them from spilling
        PRECISION="ieee" if p.dtype == torch.float32 else "tf32",
    )
    return args, constants


def _cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` (``triton.cdiv`` is a jitted function: 3.5 us a host call here against
    0.03 for this, ``timeit`` of ``triton.cdiv(4096, 128)``; a call launches four grids)."""
    return -(-a // b)


def _strides(t: Tensor) -> tuple[int, ...]:
    """Batch, head and row strides (one call into torch: a launch passes a dozen)."""
    return t.stride()[:3]


def run_forward(q, k, v, setup: Setup) -> tuple[Tensor, Tensor]:
    """``out (B, Hq, Lq, Dv)`` in q's dtype and ``lse (B, Hq, Lq)`` float32, natural log."""
    p, plan = setup.problem, setup.plan
    cfg = plan.forward
    out = q.new_empty(p.batch, p.q_heads, p.q_len, p.value_dim)
    lse = torch.empty(p.batch, p.q_heads, p.q_len, dtype=torch.float32, device=q.device)
    grid = (_cdiv(p.q_len, cfg.block_m), p.batch, p.q_heads)
    attention_forward[grid](
        q, k, v, out, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
        lse.stride(0), lse.stride(1), *plan.walk, *plan.args, setup.seed, p.dropout_p,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages, EVEN=plan.even, **plan.constants,
    )  # fmt: skip
    return out, lse


def run_backward(q, k, v, out, lse, dout, dlse, relative, setup: Setup):
    """Gradients ``dq, dk, dv`` (the inputs' dtypes) and the relative table's (float32, by
    distance; None without one), from the *global* ``out`` and ``lse``."""
    p, plan = setup.problem, setup.plan
    cfg = plan.backward
    delta = _delta(out, dout, dlse, lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    drel = torch.zeros_like(relative) if relative is not None else None
    shared = [*_strides(q), *_strides(k), *_strides(v), *_strides(dout), lse.stride(0),
              lse.stride(1)]  # fmt: skip
    tail = (*plan.args, setup.seed, p.dropout_p)
    grid_kv = (_cdiv(p.kv_len, cfg.block_n1), p.batch, p.kv_heads)
    attention_backward_kv[grid_kv](
        q, k, v, dout, lse, delta, dk, dv, drel if drel is not None else delta, *shared,
        *_strides(dk), *_strides(dv), *plan.walk_kv, *tail,
        BLOCK_M=cfg.block_m1, BLOCK_N=cfg.block_n1, PACK=plan.pack, num_warps=cfg.warps_kv,
        num_stages=cfg.stages_kv, EVEN=plan.even, DIRECT=cfg.kv_direct,
        TMA=_takes_tma(cfg.kv_tma, q, dout), **plan.constants,
    )  # fmt: skip
    grid_q = (_cdiv(p.q_len, cfg.block_m2), p.batch, p.q_heads)
    attention_backward_q[grid_q](
        q, k, v, dout, lse, delta, dq, *shared, *_strides(dq), *plan.walk, *tail,
        BLOCK_M=cfg.block_m2, BLOCK_N=cfg.block_n2, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages, EVEN=plan.even, TMA=_takes_tma(cfg.dq_tma, k, v),
        **plan.constants,
    )  # fmt: skip
    return dq, dk, dv, drel


def tma_ready(*tensors: Tensor) -> bool:
    """Whether the copy engine can read each ``(B, H, L, D)`` tensor through a TMA descriptor:
    its start and its batch, head and row strides on 16 bytes, its rows contiguous (a head size
    of 20 in fp16, 40-byte rows, is not; the kernel then loads as it does without). A stride
    of 0 (a dimension broadcast by ``expand``) is refused too: no hardware run has shown a
    descriptor reading one."""
    for t in tensors:
        size = t.element_size()
        if t.data_ptr() % 16 or t.stride(3) != 1:
            return False
        if any(stride * size % 16 or stride == 0 for stride in t.stride()[:3]):
            return False
    return True


def _takes_tma(asked: bool, *tensors: Tensor) -> bool:
    """Whether a pass reads ``tensors`` through TMA: ``asked`` by its config and
    ``tma_ready``. Then Triton gets the allocator for the global scratch buffer a descriptor
    made in a kernel lives in: Triton keeps it in a context variable, which autograd's device
    thread (where the backward runs) starts without, so each launch that needs one sets it."""
    if not (asked and tma_ready(*tensors)):
        return False
    triton.set_allocator(_scratch(tensors[0].device))
    return True


@functools.cache
def _scratch(device: torch.device):
    """Triton's allocator on ``device`` (``_takes_tma``)."""

    def allocate(size: int, alignment: int, stream) -> Tensor:
        return torch.empty(size, dtype=torch.int8, device=device)

    return allocate


# the switches that keep the bounds: the score modifiers' and dropout's
MODIFIERS = frozenset(modifier_paths(ModPlan(), dropout=False))


def skips_bounds(switched: frozenset[str], dtype: torch.dtype) -> bool:
    """Whether the passes skip the bounds in their full tiles (``EVEN``): none of the call's
    ``switched`` code paths is a score modifier or dropout (``MODIFIERS``; the mask's do not
    matter) and its tables' ``dtype`` is 16-bit. Each pass then walks lists whose ragged edge
    along the axis it steps on is never full (``TileLists.edges_partial``: keys for the forward
    and dQ, queries for dK/dV), so what a full tile's steps load all exists at any length.
    (With modifiers the bounds are a small part of a step, and without them the dQ pass with
    a per-pair table spilled 8 bytes at D=16-32; the float32 forward, the exact path, spilled
    8-12 bytes at D=32 and 128: check_sm90's ``EVEN_VARIANTS``.)"""
    return not switched & MODIFIERS and dtype != torch.float32


MAX_PACK = 16  # the smallest dK/dV block holds 16 query rows: one of each of 16 heads


def pack_of(group: int, lists: TileLists, dtype: torch.dtype) -> int:
    """How many query heads of a group the dK/dV pass takes in one step: the whole group when
    its heads visit the same tiles (the mask's lists broadcast over heads), it is a power of
    two up to ``MAX_PACK`` and the tables' ``dtype`` is 16-bit (packing is for speed; float32,
    the exact path, keeps its small blocks); else 1, a loop over the group's heads (whose
    extra live values take smaller blocks, ``configs.GROUPED_KV_ROWS``)."""
    shared = lists.shape[1] == 1
    if shared and dtype != torch.float32 and group <= MAX_PACK and group & (group - 1) == 0:
        return group
    return 1


DELTA_WARPS, DELTA_STAGES = 4, 3  # the delta pass's launch (check_sm90 compiles the same)


def delta_rows(value_dim: int) -> int:
    """Rows per program of the delta pass: 16K float32 products at most (128 registers a
    thread at 4 warps, whatever the head size)."""
    return min(64, 8192 // padded_dim(value_dim))


def _delta(out: Tensor, dout: Tensor, dlse: Tensor | None, lse: Tensor) -> Tensor:
    """``rowsum(out * dout) - dlse``, ``(B, Hq, Lq)`` float32 laid out as ``lse``, in one pass
    over out and dout. (On an H200 at 16k the backward spent 0.5 ms outside its two main
    passes; four PyTorch ops with float32 copies of both, as before, move ~0.94 GB: about
    0.27 ms of it at the chip's bandwidth.)"""
    out, dout = out.contiguous(), dout.contiguous()  # one layout for both (no copy: the
    # forward made out, autograd's dout is made contiguous before)
    delta = torch.empty_like(lse)
    if dlse is not None:
        dlse = dlse.float().expand_as(lse).contiguous()
    batch, heads, q_len, value_dim = out.shape
    rows = delta_rows(value_dim)
    attention_backward_delta[(_cdiv(q_len, rows), batch, heads)](
        out, dout, dlse if dlse is not None else delta, delta, *_strides(out),
        delta.stride(0), delta.stride(1), q_len, value_dim,
        BLOCK_M=rows, BLOCK_DV=padded_dim(value_dim), HAS_DLSE=dlse is not None,
        num_warps=DELTA_WARPS, num_stages=DELTA_STAGES,
    )  # fmt: skip
    return delta


class TritonAttention(torch.autograd.Function):
    """``(out, lse) = f(q, k, v, relative)``; ``relative`` is the relative bias by distance
    ``(Hq, Lq + Lk - 1)`` float32, or None. Both outputs are differentiable (``lse``'s
    gradient enters through delta), so per-chunk results can be merged outside."""

    @staticmethod
    def forward(ctx, q, k, v, relative, setup: Setup):
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no zeros)
        out, lse = run_forward(q, k, v, setup)  # (relative: in the plan's arguments)
        ctx.save_for_backward(q, k, v, out, lse, relative)
        ctx.setup = setup
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, relative = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        dq, dk, dv, drel = run_backward(
            q, k, v, out, lse, dout.contiguous(), dlse, relative, ctx.setup
        )
        return dq, dk, dv, drel, None
