"""Tuning constants of the Triton kernel for sm_90 (H100/H200), per head dimension.

The sparse tile (128, the tile lists' ``TILE``) says which key tiles a query tile visits; the
*compute blocks* below step inside it. A compute block never spans two sparse tiles, so every
block size divides 128. FlexAttention's sm90 choices for D=128 are the starting point (forward
128x64, 3 stages, 8 warps; backward M1=64, N1=128, M2=128, N2=64); the larger head dims shrink
blocks and stages until ``check_sm90`` (which compiles every entry here for sm_90) reports the
backward inside the 227 KB of shared memory an H100 gives one block, without register spills.

These are starting points chosen by compilation, not by timing: no GPU was at hand. Timing on
an H100/H200 may move them (benchmarks/gpu.py runs the kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

SHARED_MEMORY_LIMIT = 227 * 1024  # bytes one block may use on sm_90


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


# Keyed by the padded head dimension (a power of two, 16..256): the largest of D and Dv.
FORWARD = {
    16: ForwardConfig(128, 64, 4, 3),
    32: ForwardConfig(128, 64, 4, 3),
    64: ForwardConfig(128, 64, 4, 3),
    128: ForwardConfig(128, 64, 8, 3),
    256: ForwardConfig(64, 64, 4, 2),
}
BACKWARD = {
    16: BackwardConfig(64, 128, 128, 64, 4, 3),
    32: BackwardConfig(64, 128, 128, 64, 4, 3),
    64: BackwardConfig(64, 128, 128, 64, 8, 3),
    128: BackwardConfig(64, 128, 128, 64, 8, 2),
    256: BackwardConfig(32, 64, 64, 32, 4, 1),
}


def padded_dim(dim: int) -> int:
    """The power of two >= ``dim`` (at least 16, ``tl.dot``'s smallest) the kernel computes in;
    the columns past ``dim`` are masked on load and never stored."""
    return max(16, 1 << (dim - 1).bit_length())


def configs_for(head_dim: int, value_dim: int, tile: int) -> tuple[ForwardConfig, BackwardConfig]:
    """The configurations for these head sizes, with every block clamped to the sparse
    ``tile`` (tests use 64-wide tiles to get more structure out of short sequences)."""
    key = max(padded_dim(head_dim), padded_dim(value_dim))
    fwd, bwd = FORWARD[key], BACKWARD[key]
    fwd = ForwardConfig(min(fwd.block_m, tile), min(fwd.block_n, tile), *_rest(fwd))
    bwd = BackwardConfig(
        min(bwd.block_m1, tile),
        min(bwd.block_n1, tile),
        min(bwd.block_m2, tile),
        min(bwd.block_n2, tile),
        bwd.num_warps,
        bwd.num_stages,
    )
    return fwd, bwd


def _rest(fwd: ForwardConfig) -> tuple[int, int]:
    return fwd.num_warps, fwd.num_stages
