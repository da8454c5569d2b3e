"""Tuning constants of the Triton kernel for sm_90 (H100/H200).

The sparse tile (128, the tile lists' ``TILE``) says which key tiles a query tile visits; the
*compute blocks* below step inside it. A compute block never spans two sparse tiles, so every
block size divides 128.

The tables are keyed by the bytes of one padded row of q/k/v (head dim rounded up to a power
of two, times 2 for fp16/bf16): what fills shared memory and registers. float32 takes the
last three entries (see ``row_bytes``). FlexAttention's
sm90 choices for bf16 D=128 (256 bytes) are the starting point (forward 128x64, 3 stages, 8
warps; backward M1=64, N1=128, M2=128, N2=64); ``check_sm90`` compiles every entry for sm_90
and the values below are the ones it reports inside the 227 KB of shared memory a block may
use, without register spills in the loops past a small share of their instructions. (The
spilled bytes quoted below, before stop 27, are ``ptxas -v``'s on a second assembly of the
PTX, not Triton's own cubin: ``sass`` says why; they show where pressure is, not the count.)
Calls that read a per-pair table inside the loop (a bitmap mask,
the relative bias) keep one pipeline stage fewer (those reads are pipelined through shared
memory too), eight warps in a 16-bit forward (the per-pair reads need registers), half the rows
per dK/dV block and half its keys down to 32 (there the bias gradient is scattered; 16x16
blocks spill). Calls with dropout draw a Philox number per pair of a step, whose state the
compiler keeps for every pair at once: they take 8 warps and at most 64 x 64 pairs a step, half
that where ``DROPOUT_PAIRS`` says (a per-pair table, larger head dims; at D = 256 with a table,
16 keys a dK/dV block). Light calls (``is_light``) take larger dK/dV blocks; grouped-query
calls whose dK/dV pass loops over the group's heads smaller ones (``LIGHT_KV``,
``GROUPED_KV_ROWS``); a group packed into each step takes one head's blocks.

Chosen by compilation, except the 16-bit D=128 backward, timed on an H200 (below); timing the
others on an H100/H200 (benchmarks/gpu_backward_sweep.py --head-dim N) may move them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

SHARED_MEMORY_LIMIT = 227 * 1024  # bytes one block may use on sm_90
FLOAT32_KEYS = (1024, 2048, 4096)  # float32 calls: D <= 32, <= 128, <= 256 (``row_bytes``)
# Calls with dropout: the largest compute step (query rows x keys), per row bytes, for the
# forward and the backward, each (without, with a per-pair table); found by check_sm90
DROPOUT_PAIRS = {
    32: ((4096, 2048), (4096, 4096)),
    64: ((4096, 2048), (4096, 4096)),
    128: ((4096, 2048), (4096, 2048)),
    256: ((4096, 2048), (2048, 2048)),
    512: ((4096, 2048), (2048, 2048)),
}


@dataclass(frozen=True)
class ForwardConfig:
    block_m: int  # query rows per program
    block_n: int  # key columns per step
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class BackwardConfig:
    block_m1: int  # dK/dV pass: query rows per step
    block_n1: int  # dK/dV pass: key rows per program
    block_m2: int  # dQ pass: query rows per program
    block_n2: int  # dQ pass: key columns per step
    num_warps: int
    num_stages: int
    kv_stages: int | None = None  # the dK/dV pass's, when it differs from num_stages
    kv_warps: int | None = None  # the dK/dV pass's, when it differs from num_warps
    # the dK/dV pass's tiles queries down, K and V from shared memory (the kernel's DIRECT)
    kv_direct: bool = False
    # the dK/dV pass reads Q and dO through TMA descriptors (the kernel's TMA), the dQ pass its
    # full tiles' K and V, where the call's tensors allow it (``launch.tma_ready``)
    kv_tma: bool = False
    dq_tma: bool = False

    @property
    def stages_kv(self) -> int:
        return self.num_stages if self.kv_stages is None else self.kv_stages

    @property
    def warps_kv(self) -> int:
        return self.num_warps if self.kv_warps is None else self.kv_warps


# Keyed by row bytes (``row_bytes``: bf16 D=128 -> 256; float32 -> 1024 or 2048).
FORWARD = {
    32: ForwardConfig(128, 64, 4, 3),
    64: ForwardConfig(128, 64, 4, 3),
    128: ForwardConfig(128, 64, 4, 3),
    256: ForwardConfig(128, 64, 8, 3),
    512: ForwardConfig(64, 32, 8, 2),
    1024: ForwardConfig(32, 16, 4, 1),
    2048: ForwardConfig(16, 16, 8, 2),
}
FORWARD[4096] = FORWARD[2048]  # float32 D <= 256: the D <= 128 blocks (other tables differ)
# The dK/dV pass holds dK, dV (fp32) and K, V for its key block across the whole loop: with 128
# keys and D=128 that alone is 192 registers a thread at 8 warps, and FlexAttention's N1=128
# spills here; N1=64 does not (check_sm90), at the price of reading Q and dO twice as often.
# The 16-bit D=128 entry (256) was timed on an H200 (benchmarks/gpu_backward_sweep.py, B=1,
# H=16, L=16k, bf16; docs/gpu.md), six candidates for each pass. 4 warps took the dK/dV pass
# from 9.39 to 4.63 ms causal and from 1.38 to 0.73 ms under a 1024 window (32 x 64 blocks;
# 64 x 64 was faster still, 3.86 and 0.64 ms, but at 255 registers it spills up to 520 bytes
# once rules and score modifiers add up), and the dQ pass from 3.35 to 2.97 and from 0.53 to
# 0.45 ms (64 x 64). The other entries are chosen by compilation alone.
BACKWARD = {
    32: BackwardConfig(64, 128, 128, 64, 8, 3),
    64: BackwardConfig(64, 128, 128, 64, 8, 3),
    128: BackwardConfig(64, 128, 128, 64, 8, 3),
    256: BackwardConfig(32, 64, 64, 64, 4, 2),  # timed on an H200 (below)
    512: BackwardConfig(32, 32, 32, 32, 8, 1),
    1024: BackwardConfig(16, 32, 32, 16, 4, 1),
    2048: BackwardConfig(16, 16, 32, 16, 8, 2, kv_stages=1),
}
BACKWARD[4096] = BACKWARD[2048]

# float32 calls with dropout: the backward changes that keep ptxas from spilling (8 to 64 bytes,
# at 72 to 128 registers a thread: its allocation is erratic at these sizes); check_sm90
FLOAT32_DROPOUT = {1024: dict(kv_stages=2), 2048: dict(block_m2=16)}
FLOAT32_DROPOUT[4096] = FLOAT32_DROPOUT[2048]
# Calls with a bitmap mask whose plan has dead keys (keys no query attends, ``LIVE``: the key
# loads check one more mask): (forward, backward) changes, without dropout, where ptxas spilled
# 8 to 16 bytes; check_sm90. (float32 D = 256 keeps its dK/dV pass: one stage fits, two spill.)
DEAD_KEYS = {
    64: ({}, dict(num_stages=1)),  # dQ
    1024: ({}, dict(kv_warps=8)),  # dK/dV (8 warps spill in dQ, so only there)
    2048: (dict(num_stages=1), dict(kv_stages=2)),
    4096: (dict(num_stages=1), {}),
}
# The dK/dV pass under any bitmap mask (without dropout), and with dropout and a per-pair
# table: 16 keys a block at 16-bit D = 256, where 32 spilled; check_sm90
BITMAP_KV = {512: dict(block_n1=16)}
DROPOUT_TABLE_KV = {512: dict(block_n1=16)}
# The dK/dV pass of a *light* call (``is_light``): 64 x 64 blocks at 4 warps, timed on an H200
# at 3.86 / 0.64 / 0.63 ms (causal / window 1024 / 8 documents, L=16k) against the 32 x 64
# entry's 4.63 / 0.73 / 0.74 (benchmarks/gpu_backward_sweep.py). They fill all 255 registers a
# thread, so they fit only without the code a heavier call adds, and even so spill a little
# inside the loop (up to 4.0% of a step under Triton 3.6, which that timing ran: 1.5%);
# check_sm90 compiles every light combination and allows them LIGHT_SPILL_SHARE.
LIGHT_KV = {256: dict(block_m1=64)}
# The dK/dV pass of packed groups with a per-pair table (a pointer per column into it): 8 warps
# where 4 spilled 16 bytes (16-bit D = 128); check_sm90
PACKED_TABLE_KV = {256: dict(kv_warps=8)}
# The dK/dV pass of grouped-query calls that loop over the group's heads (``pack < group``:
# per-head masks, groups of 3, 5, 6, ... heads; the loop keeps more alive), where the ungrouped
# entry spilled 8 to 72 bytes: the most query rows a step, and the warps; check_sm90 compiles
# every variant with GROUP = 4 both looped and packed.
GROUPED_KV_ROWS = {64: 32, 128: 32, 256: 16}
GROUPED_KV_WARPS = {1024: 8}

# The kernel switches (its constexpr names) that make a call heavier than ``LIGHT_KV`` allows
HEAVY = frozenset({"CAP", "RELATIVE", "BITMAP", "LIVE", "DROPOUT"})
RULE_FAMILIES = frozenset({"CAUSAL", "WINDOWED", "DOCUMENT", "PREFIX"})  # besides PADDING


def is_light(switches: frozenset[str], group: int = 1, pack: int = 1) -> bool:
    """Whether the dK/dV pass takes ``LIGHT_KV``: no loop over a group's heads (one query head
    per key head, or the whole group packed into each step: ``pack == group``), no softcap,
    no per-pair table, no dropout, documents without ALiBi (with it, ptxas spilled 8 to 204
    bytes), key padding beside no other rule family (with one, Triton 3.6's build without
    bounds spent 10% of its loop on spills, 3.9's none: stop 27); packed heads also without
    ALiBi (a slope per column), key padding, or documents beside a prefix (16 to 72 bytes).
    Found by compiling every combination (check_sm90, under Triton 3.9 and 3.6); what fits at
    255 registers is not monotone, so the rule is what was compiled, kept simple where that
    costs little."""
    if group // pack > 1 or switches & HEAVY:
        return False
    if pack > 1 and (switches & {"ALIBI", "PADDING"} or {"DOCUMENT", "PREFIX"} <= switches):
        return False
    if "PADDING" in switches and switches & RULE_FAMILIES:
        return False
    return not {"DOCUMENT", "ALIBI"} <= switches


def takes_light_kv(key: int, switches: frozenset[str], group: int = 1, pack: int = 1) -> bool:
    """Whether a call whose tables' key is ``key`` (``row_bytes``) takes ``LIGHT_KV``'s dK/dV
    blocks: an entry there and ``is_light``."""
    return key in LIGHT_KV and is_light(switches, group, pack)


def padded_dim(dim: int) -> int:
    """The power of two >= ``dim`` (at least 16, ``tl.dot``'s smallest) the kernel computes in;
    the columns past ``dim`` are masked on load and never stored."""
    return max(16, 1 << (dim - 1).bit_length())


def row_bytes(head_dim: int, value_dim: int, dtype: torch.dtype) -> int:
    """The key of the tables: bytes of one padded row of the widest of q/k and v (16-bit
    dtypes). float32 is the exact path, not the fast one: its products run on the FMA units
    ("ieee"), which hold whole fp32 operands in registers, so it takes small-block entries of
    its own, ``FLOAT32_KEYS``: D <= 32, D <= 128 and D <= 256 (the last two share their blocks
    and differ in the changes of the other tables)."""
    width = max(padded_dim(head_dim), padded_dim(value_dim))
    if dtype == torch.float32:
        return FLOAT32_KEYS[(width > 32) + (width > 128)]
    return width * 2


def _at_most(config, **bounds):
    """``config`` with each named field lowered to its bound (never raised)."""
    lowered = {name: min(getattr(config, name), bound) for name, bound in bounds.items()}
    return replace(config, **lowered)


@functools.cache  # a pure function of hashable settings, asked at every call
def configs_for(
    head_dim: int,
    value_dim: int,
    dtype: torch.dtype,
    switches: frozenset[str] = frozenset(),
    group: int = 1,
    pack: int = 1,
    tile: int = 128,
) -> tuple[ForwardConfig, BackwardConfig]:
    """The configurations of one call. ``switches``: the kernel's optional code paths the call
    turns on, by their constexpr names (``plan.switches``): ``BITMAP`` or ``RELATIVE`` read a
    per-pair table in the loop, ``DROPOUT`` draws a number per pair, ``LIVE`` marks a bitmap
    plan with dead keys; the rule families and score modifiers decide ``is_light``. ``group``:
    query heads per key/value head, ``pack``: how many of them the dK/dV pass takes in one step
    (``launch.pack_of``; it loops over the ``group // pack`` packs). Every block is clamped to
    the sparse ``tile`` (tests use 64-wide tiles to get more structure out of short
    sequences)."""
    key = row_bytes(head_dim, value_dim, dtype)
    fwd, bwd = FORWARD[key], BACKWARD[key]
    gathers = bool(switches & {"BITMAP", "RELATIVE"})
    dropout, bitmap = "DROPOUT" in switches, "BITMAP" in switches
    if takes_light_kv(key, switches, group, pack):
        bwd = replace(bwd, **LIGHT_KV[key])
    if gathers and key not in FLOAT32_KEYS:  # (float32's small blocks need no change)
        fwd = replace(fwd, num_stages=max(1, fwd.num_stages - 1), num_warps=8)
        bwd = replace(
            bwd,
            num_stages=max(1, bwd.num_stages - 1),
            kv_stages=max(1, bwd.stages_kv - 1),
            block_m1=max(16, bwd.block_m1 // 2),
            block_n1=bwd.block_n1 // 2 if bwd.block_n1 >= 64 else bwd.block_n1,
        )
    if "LIVE" in switches and not dropout and key in DEAD_KEYS:
        forward_change, backward_change = DEAD_KEYS[key]
        kv_stages = bwd.stages_kv  # a change of num_stages is the dQ pass's alone
        fwd, bwd = replace(fwd, **forward_change), replace(bwd, **backward_change)
        bwd = replace(bwd, kv_stages=backward_change.get("kv_stages", kv_stages))
    if bitmap and not dropout and key in BITMAP_KV:
        bwd = replace(bwd, **BITMAP_KV[key])
    if dropout and key in FLOAT32_KEYS:
        bwd = replace(bwd, **FLOAT32_DROPOUT[key])
    if dropout and key not in FLOAT32_KEYS:
        # Philox keeps its state for every pair of the step at once: at most DROPOUT_PAIRS
        # pairs a step (4096: 16 a thread at 8 warps); fewer query rows rather than fewer keys
        forward_pairs, backward_pairs = DROPOUT_PAIRS[key]
        pairs = forward_pairs[gathers]
        fwd = replace(fwd, num_warps=8, block_m=min(fwd.block_m, pairs // fwd.block_n))
        pairs = backward_pairs[gathers]
        bwd = replace(
            bwd,
            num_warps=8,
            block_m1=min(bwd.block_m1, pairs // bwd.block_n1),
            block_m2=min(bwd.block_m2, pairs // bwd.block_n2),
        )
        if gathers and key in DROPOUT_TABLE_KV:
            bwd = replace(bwd, **DROPOUT_TABLE_KV[key])
    if pack > 1 and gathers and key in PACKED_TABLE_KV:
        bwd = replace(bwd, **PACKED_TABLE_KV[key])
    if group // pack > 1 and key in GROUPED_KV_ROWS:
        bwd = _at_most(bwd, block_m1=GROUPED_KV_ROWS[key])
    if group // pack > 1 and key in GROUPED_KV_WARPS:
        bwd = replace(bwd, kv_warps=GROUPED_KV_WARPS[key])
    fwd = _at_most(fwd, block_m=tile, block_n=tile)
    bwd = _at_most(bwd, block_m1=tile, block_n1=tile, block_m2=tile, block_n2=tile)
    return fwd, bwd
