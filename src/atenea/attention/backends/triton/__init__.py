"""The ``"triton"`` backend: atenea's own block-sparse attention kernel, forward and backward,
driven by the tile lists (``tile_lists.py``).

Triton is imported only when a call runs here, so ``import atenea`` never needs it. On CUDA
tensors the kernels compile for the GPU; on CPU tensors they run in Triton's interpreter, which
must be switched on (``TRITON_INTERPRET=1``) before triton is first imported: that is how the
tests run without a GPU.

Entry points: ``triton_attention(q, k, v, problem)`` (what ``atenea.attention(...,
backend="triton")`` calls) and ``why_not(problem)`` (the one-line reason an explicit
request cannot run, or None).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import torch
from torch import Tensor

from atenea.attention.backends.tile_lists import TILE, tile_lists
from atenea.attention.backends.triton.configs import configs_for
from atenea.attention.backends.triton.plan import (
    kernel_paths,
    mask_plan,
    mod_plan,
    modifier_paths,
    relative_bias_by_distance,
    switches,
    unfusable,
)
from atenea.attention.problem import Problem
from atenea.attention.scores import SoftCap, modifiers_in

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def why_not(problem: Problem) -> str | None:
    """Why the Triton kernel cannot run this call (on ``problem.device`` in
    ``problem.dtype``), in one line, or None when it can."""
    p = problem
    if not _installed():
        return "triton is not installed (pip install 'atenea[gpu]')"
    reason = unfusable(p.score_mod, p)
    if reason is not None:
        return f"score_mod: {reason}"
    if max(p.head_dim, p.value_dim) > MAX_HEAD_DIM:
        return f"head sizes up to {MAX_HEAD_DIM}, got D={p.head_dim}, Dv={p.value_dim}"
    device, dtype = p.device, p.dtype
    interpreting = _interpreting()
    if device.type == "cpu" and not interpreting:
        return (
            "CPU tensors run only in Triton's interpreter: set TRITON_INTERPRET=1 before "
            "triton is imported, or use backend='blocks'"
        )
    if device.type == "cuda" and interpreting:
        return "Triton's interpreter is on (TRITON_INTERPRET=1): CUDA tensors need it off"
    if device.type not in ("cpu", "cuda"):
        return f"Triton runs on CUDA tensors (or CPU ones in its interpreter), got {device}"
    if dtype not in DTYPES:
        return f"the kernel computes float16, bfloat16 or float32, got {dtype}"
    return None


@functools.cache  # auto asks at every CUDA call; a search of the import path each time
def _installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    """Whether the kernels are (or will be) decorated for the interpreter: fixed at their
    import, so once imported their module's flag wins over the environment."""
    rules = sys.modules.get("atenea.attention.backends.triton.rules")
    if rules is not None:
        return rules.INTERPRETED
    return os.environ.get("TRITON_INTERPRET") == "1"


# Bumped by ``forget_plans``: plans are remembered on their tile lists under a key that holds it.
_generation = 0


def forget_plans() -> None:
    """Make the next calls plan again (a benchmark that swaps the block sizes,
    ``configs_for``, calls this; the plans made before go with their lists)."""
    global _generation
    _generation += 1


def triton_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    problem: Problem,
    tile: int = TILE,
    table_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention on the Triton kernel: ``out (B, Hq, Lq, Dv)`` in q's dtype and ``lse
    (B, Hq, Lq)`` float32 (natural log; ``-inf`` for a row with no allowed key). Both are
    differentiable, the LSE included (``delta`` takes its gradient), and the relative bias
    table receives its gradient. ``tile`` is the sparse tile (tests use 64 for more structure
    on short inputs). ``table_dtype``: whose row of the tuning tables sets the blocks; by
    default q's dtype on a GPU, float16 in the interpreter (it pays per block step, and the
    16-bit blocks are the ones speed depends on). With ``problem.dropout_p > 0`` one seed is
    drawn from torch's generator (``torch.manual_seed`` makes the call reproducible); the
    kernels derive every element's keep decision from it (``rules.dropout_keep``). The caller
    checks ``why_not`` first."""
    from atenea.attention.backends.triton.launch import Setup, TritonAttention

    p = problem
    if table_dtype is None:
        table_dtype = torch.float16 if q.device.type == "cpu" else q.dtype
    plan, relative = plan_call(p, q.device, tile, table_dtype)
    # one int64 from torch's generator: torch.manual_seed makes the dropout reproducible
    seed = int(torch.randint(0, 2**62, ())) if p.dropout_p > 0 else 0
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return TritonAttention.apply(q, k, v, relative, Setup(problem=p, plan=plan, seed=seed))


def plan_call(p: Problem, device, tile: int, table_dtype: torch.dtype):
    """The call's ``launch.Plan`` and its relative bias by distance (a differentiable input;
    None without ``scores.relative_bias``). A call without a modifier holding tensors (none,
    or softcap) reuses the plan of the first call alike: remembered on the tile lists (cached
    per mask, lengths, tile and device, the plan lives as long as they do) per batch, heads,
    head sizes, scale, dtypes, softcap and whether dropout is on. ALiBi's slopes and T5's
    table may train or change: with them the call plans every time."""
    lists = tile_lists(p.mask, p.q_len, p.kv_len, device, tile, tile)
    leaves = modifiers_in(p.score_mod) if p.score_mod is not None else []
    if not all(isinstance(leaf, SoftCap) for leaf in leaves):
        return _make_plan(p, lists, device, table_dtype)
    key = ("triton_plan", _generation, p.batch, p.q_heads, p.kv_heads, p.head_dim,
           p.value_dim, p.scale, p.dtype, table_dtype, p.dropout_p > 0,
           tuple(leaf.cap for leaf in leaves))  # fmt: skip
    return lists.remember(key, lambda: _make_plan(p, lists, device, table_dtype)[0]), None


def _make_plan(p: Problem, lists, device, table_dtype: torch.dtype):
    from atenea.attention.backends.triton.launch import Plan, pack_of, shared_args, skips_bounds

    mods = mod_plan(p.score_mod, p, device)
    # the modifiers decide it, not the mask: the lists, and so the mask's plan (its bitmaps
    # of the partial tiles), depend on it
    modifiers = modifier_paths(mods, p.dropout_p > 0)
    even = skips_bounds(switches(modifiers), table_dtype)
    walked = walked_kv = lists
    if even:  # full tiles without a bound: a ragged edge's tiles are partial, for the passes
        # that step along it (the forward and dQ along keys, dK/dV along queries); the mask's
        # plan (its bitmaps of the partial tiles) covers both
        walked, walked_kv = lists.edges_partial(rows=False), lists.edges_partial(cols=False)
        lists = lists.edges_partial()
    mask = mask_plan(p.mask, lists)
    pack = pack_of(p.group, lists, table_dtype)
    paths = kernel_paths(mask, modifiers)
    forward, backward = configs_for(
        p.head_dim, p.value_dim, table_dtype, switches(paths), p.group, pack, lists.q_tile
    )
    relative = None
    if mods.relative_module is not None:
        relative = relative_bias_by_distance(mods.relative_module, p).to(device)
    args, constants = shared_args(p, walked, mask, mods, paths, relative, device)
    plan = Plan(
        lists=walked, lists_kv=walked_kv, forward=forward, backward=backward, batch=p.batch,
        heads=p.q_heads, args=args, constants=constants, pack=pack, even=even,
    )  # fmt: skip
    return plan, relative
