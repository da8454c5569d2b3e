"""Planning the tiled backend: which key spans each band of queries computes, grouped into as
few kernel calls as possible.

1. The mask classifies every ``Q_TILE x K_TILE`` tile as EMPTY, PARTIAL or FULL (a tile is FULL
   only if it is full for every batch row and head, EMPTY only if empty for all of them).
2. Per band of ``Q_TILE`` query rows, the non-empty tiles become *spans*: contiguous key
   ranges. EMPTY tiles split spans and are never computed. A long run of FULL tiles is a span of
   its own, computed without a mask; PARTIAL tiles and the short FULL runs beside them share one
   masked call (one bigger call beats several small ones plus their merges; a mask costs ~5%).
3. Spans of equal shape that repeat at a regular step -- the same window at every band, the
   diagonal tile of every band, the i-th band of every packed document, the padded tail of every
   band -- form a *group*: one kernel call with the members stacked along the batch axis, as
   strided views of ``q, k, v`` (no copies when ``B == 1``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from atenea.attention.masks import EMPTY, FULL, PARTIAL
from atenea.attention.problem import Problem

Q_TILE = 128
K_TILE = 128
# A run of FULL tiles at least this many keys long is computed on its own, without a mask.
LONG_FULL_RUN = 1024
# Most mask elements (members x rows x cols) one masked group may stack.
MASK_BUDGET = 1 << 22


@dataclass(frozen=True)
class Segment:
    """Keys ``k_start:k_end`` for query rows ``q_start:q_end``; ``masked`` = needs a mask."""

    q_start: int
    q_end: int
    k_start: int
    k_end: int
    masked: bool


@dataclass(frozen=True)
class Group:
    """``count`` segments of one shape: member ``i`` covers query rows
    ``q_start + i*q_step`` (``rows`` of them) and keys ``k_start + i*k_step`` (``cols``).
    ``q_step >= rows``: members never share a query row (``k_step`` may be 0: same keys)."""

    q_start: int
    k_start: int
    rows: int
    cols: int
    q_step: int
    k_step: int
    count: int
    masked: bool

    def members(self) -> Iterator[Segment]:
        for i in range(self.count):
            q_start, k_start = self.q_start + i * self.q_step, self.k_start + i * self.k_step
            yield Segment(q_start, q_start + self.rows, k_start, k_start + self.cols, self.masked)


def tile_kinds(problem: Problem, q_tile: int, k_tile: int) -> torch.Tensor:
    """Kinds ``(n_q, n_k)`` reduced over batch rows and heads (FULL only if full for all)."""
    p = problem
    if p.mask is None:
        return torch.full((-(-p.q_len // q_tile), -(-p.kv_len // k_tile)), FULL, dtype=torch.int8)
    per_row_head = p.mask.tile_kinds(p.q_len, p.kv_len, q_tile, k_tile).flatten(0, 1)
    return torch.where(
        (per_row_head == FULL).all(0),
        FULL,
        torch.where((per_row_head == EMPTY).all(0), EMPTY, PARTIAL),
    ).to(torch.int8)


def band_spans(row: list[int], k_tile: int) -> list[tuple[int, int, bool]]:
    """Key spans ``(first_tile, end_tile, masked)`` of one band, from its tile kinds."""
    spans: list[tuple[int, int, bool]] = []
    current: list | None = None  # [first_tile, end_tile, masked]
    start = 0
    for kind, run in itertools.groupby(row):
        count = len(list(run))
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
    return spans


def plan_segments(problem: Problem, q_tile: int = Q_TILE, k_tile: int = K_TILE) -> list[Segment]:
    """Every span of every band, as segments in row order. Rows covered by no segment have no
    allowed key at all (their output is 0 and their log-sum-exp ``-inf``)."""
    p = problem
    segments = []
    for band, row in enumerate(tile_kinds(p, q_tile, k_tile).tolist()):
        q_start, q_end = band * q_tile, min((band + 1) * q_tile, p.q_len)
        for first, end, masked in band_spans(row, k_tile):
            segments.append(
                Segment(q_start, q_end, first * k_tile, min(end * k_tile, p.kv_len), masked)
            )
    return segments


def plan_groups(
    problem: Problem, q_tile: int = Q_TILE, k_tile: int = K_TILE, batch: int = 1
) -> list[Group]:
    """Segments grouped into regular strided runs of equal shape (see the module docstring)."""
    by_shape: dict[tuple[int, int, bool], list[Segment]] = {}
    for seg in plan_segments(problem, q_tile, k_tile):
        key = (seg.q_end - seg.q_start, seg.k_end - seg.k_start, seg.masked)
        by_shape.setdefault(key, []).append(seg)

    groups = []
    for (rows, cols, masked), segments in by_shape.items():
        most = max(1, MASK_BUDGET // (rows * cols * batch)) if masked else len(segments)
        run: list[Segment] = []
        for seg in segments:  # already in row order
            if run and len(run) < most and _continues(run, seg, rows):
                run.append(seg)
                continue
            if run:
                groups.append(_group(run, rows, cols, masked))
            run = [seg]
        groups.append(_group(run, rows, cols, masked))
    return groups


def _continues(run: list[Segment], seg: Segment, rows: int) -> bool:
    """Whether ``seg`` extends ``run`` at the same query and key steps."""
    q_step = seg.q_start - run[-1].q_start
    k_step = seg.k_start - run[-1].k_start
    if len(run) == 1:
        return q_step >= rows and k_step >= 0
    return q_step == run[1].q_start - run[0].q_start and k_step == run[1].k_start - run[0].k_start


def _group(run: list[Segment], rows: int, cols: int, masked: bool) -> Group:
    first = run[0]
    q_step = run[1].q_start - first.q_start if len(run) > 1 else rows
    k_step = run[1].k_start - first.k_start if len(run) > 1 else 0
    return Group(first.q_start, first.k_start, rows, cols, q_step, k_step, len(run), masked)
