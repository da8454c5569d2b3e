"""Names of saved tensors that carry an index: ``{prefix}.{index}.{name}``.

A checkpoint's tensor file is flat, so what exists once per rank (``rng.rank.{rank}.torch``,
the task's carried state ``task.{rank}.…``), per carried memory (``memory.{slot}.…``,
``tasks/lm_carry.py``) or per parameter (``optimizer.state.{index}.…``) puts the index into the
name. ``indexed_name`` writes such a name and ``parse_indexed_name`` reads it back; the name
after the index may hold dots of its own (``task.0.memory.1.layer.2.keys``: rank 0, then
``memory.1.layer.2.keys``, whose own index is read the same way). ``group_by_index`` sorts
a file's tensors by the index under one prefix.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def indexed_name(prefix: str, index: int, name: str) -> str:
    """``"{prefix}.{index}.{name}"``: ``indexed_name("task", 1, "memory.0.stream")`` is
    ``"task.1.memory.0.stream"``."""
    return f"{prefix}.{index}.{name}"


def parse_indexed_name(prefix: str, full: str) -> tuple[int, str] | None:
    """``(index, name)`` of a name ``indexed_name(prefix, index, name)`` made; None for a name
    that does not start with ``prefix.``. A ``ValueError`` when the index is not an integer
    (a corrupt or foreign name under ``prefix``)."""
    if not full.startswith(prefix + "."):
        return None
    index, dot, name = full.removeprefix(prefix + ".").partition(".")
    if not (index.isdecimal() and dot):
        raise ValueError(f"{full}: expected a name '{prefix}.<index>.<name>'")
    return int(index), name


def group_by_index(prefix: str, named: dict[str, T]) -> dict[int, dict[str, T]]:
    """The entries of ``named`` under ``prefix``, by index: ``{index: {name: value}}`` (in the
    order of the sorted names); the others are left out."""
    groups: dict[int, dict[str, T]] = {}
    for full, value in sorted(named.items()):
        parsed = parse_indexed_name(prefix, full)
        if parsed is not None:
            index, name = parsed
            groups.setdefault(index, {})[name] = value
    return groups
