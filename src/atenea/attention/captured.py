"""The tensors a score modifier reaches, so gradients reach them on every backend.

A score modifier may be an ``nn.Module`` (its parameters are registered) or any function that
*captures* a tensor, FlexAttention-style::

    table = torch.zeros(heads, 2 * L - 1, requires_grad=True)     # a learnable bias
    def bias(score, b, h, q, k):
        return score + table[h, q - k + L - 1]

The reference backend differentiates through such a function by plain autograd. The tiled
backend runs the modifier inside its own ``autograd.Function`` (its backward recomputes each
tile), and such a function only hands gradients to the tensors it is given as inputs; a tensor it
does not know of would silently get ``grad=None``. So the tiled backend asks
``captured_tensors`` for every tensor needing a gradient that the modifier can reach:

- an ``nn.Module``'s parameters, buffers and attributes (the modifiers of ``atenea.scores``,
  ``compose`` of them and of plain functions);
- a function's closure cells, default arguments and the module-level names its code reads;
- ``functools.partial`` (its function, arguments, keywords) and bound methods (their object);
- lists, tuples, sets and dicts of any of these; a callable object's attributes.

The search goes ``MAX_DEPTH`` references deep. A tensor hidden deeper (or reached through an
object that is not callable) is not found; a modifier like that should be an ``nn.Module``.
"""

from __future__ import annotations

import functools
import types

from torch import Tensor, nn

MAX_DEPTH = 6


def captured_tensors(score_mod) -> list[Tensor]:
    """Every distinct tensor with ``requires_grad`` reachable from ``score_mod``, in the order
    found (a module's parameters first). ``[]`` for ``None``."""
    found: dict[int, Tensor] = {}
    seen: set[int] = set()

    def visit(value, depth: int) -> None:
        if depth > MAX_DEPTH or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, Tensor):
            if value.requires_grad:
                found.setdefault(id(value), value)
            return
        for inner in _references(value):
            visit(inner, depth + 1)

    if isinstance(score_mod, nn.Module):  # the registered ones first, in the module's order
        for parameter in score_mod.parameters():
            if parameter.requires_grad:
                found.setdefault(id(parameter), parameter)
    if score_mod is not None:
        visit(score_mod, 0)
    return list(found.values())


def _references(value) -> list:
    """What ``value`` holds that a call of it may read."""
    if isinstance(value, (str, bytes, int, float, bool, type(None), type, types.ModuleType)):
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, functools.partial):
        return [value.func, *value.args, *value.keywords.values()]
    if isinstance(value, types.MethodType):
        return [value.__func__, value.__self__]
    if isinstance(value, types.FunctionType):
        cells = [cell.cell_contents for cell in value.__closure__ or () if _filled(cell)]
        names = value.__code__.co_names
        globals_read = [value.__globals__[n] for n in names if n in value.__globals__]
        return [*cells, *(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values(),
                *globals_read]  # fmt: skip
    if isinstance(value, nn.Module) or callable(value):
        return list(getattr(value, "__dict__", {}).values())
    return []


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True
