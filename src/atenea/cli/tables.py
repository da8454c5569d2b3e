"""Tensors as aligned text tables, for the commands that print numbers (``steps``)."""

from __future__ import annotations

import torch

MAX_COLUMNS = 8  # a real model's 384 dimensions: the first few, then "…"


def _label(token: str, width: int) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def format_matrix(
    matrix: torch.Tensor, rows: list[str], cols: list[str], digits: int = 2,
    max_cols: int = MAX_COLUMNS,
) -> str:  # fmt: skip
    """A labelled, aligned text table of a 2-D tensor (``-inf`` printed as ``-inf``); past
    ``max_cols`` columns (a real model's width) the first ones and a ``…`` column."""
    more = len(cols) > max_cols and len(cols) != len(rows)  # an L x L matrix is shown whole
    if more:
        matrix, cols = matrix[:, :max_cols], cols[:max_cols]
    width = max(7, digits + 5, *(len(_label(c, 9)) + 1 for c in cols))
    label_width = max(len(_label(r, 12)) for r in rows) + 2
    head = " " * label_width + "".join(f"{_label(c, 9):>{width}}" for c in cols)
    lines = [head + ("  …" if more else "")]
    for name, row in zip(rows, matrix.tolist()):
        cells = "".join(
            f"{'-inf':>{width}}" if value == float("-inf") else f"{value:>{width}.{digits}f}"
            for value in row
        )
        lines.append(f"{_label(name, 12):<{label_width}}{cells}" + ("  …" if more else ""))
    return "\n".join(lines)
