"""The ``"flex"`` backend: PyTorch's FlexAttention, fed from atenea's tile table.

FlexAttention runs a block-sparse fused kernel that skips empty blocks, evaluates a
``mask_mod`` only inside partial blocks and applies a ``score_mod`` inside the kernel. atenea
gives it what it already knows:

- the ``BlockMask`` comes straight from ``tile_lists`` (``BlockMask.from_kv_blocks``): the mask is
  never evaluated over every ``(query, key)`` pair to find the empty blocks;
- each atenea mask is translated to a ``mask_mod`` (a function of one ``(b, h, q_idx, kv_idx)``),
  with atenea's bottom-right alignment (query row ``i`` sits at position ``i + Lk - Lq``);
- atenea's score modifiers already have FlexAttention's signature; only the query position
  is shifted to be absolute.

On CUDA the function is compiled once (``torch.compile``) and block masks are cached with the
tile lists, so a training loop compiles and builds once per shape. Elsewhere it runs eagerly:
PyTorch's reference implementation, which builds the scores -- correct, for tests, not fast.
"""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
import weakref

import torch
from torch import Tensor

from atenea.attention.backends.tile_lists import TILE, tile_lists
from atenea.attention.masks import Mask
from atenea.attention.masks.base import And, Dense, Not, Or
from atenea.attention.masks.rules import (
    Causal,
    Document,
    KeyPadding,
    PrefixLM,
    SlidingWindow,
)
from atenea.attention.problem import Problem
from atenea.attention.scores import RelativeBias, modifiers_in
from atenea.attention.transfer import to_device


def available() -> bool:
    """Whether this PyTorch has FlexAttention with the features atenea needs (torch >= 2.9)."""
    try:
        from torch.nn.attention.flex_attention import AuxRequest, BlockMask  # noqa: F401
    except ImportError:
        return False
    return True


def why_not(problem: Problem) -> str | None:
    """Why FlexAttention cannot run this call, in one line, or None when it can. On CUDA its
    compiled kernel has limits its eager CPU path does not (seen on an H200: it fails to
    compile float64, and head sizes under 16)."""
    p = problem
    if not available():
        return (
            f"this PyTorch ({torch.__version__}) has no FlexAttention with block masks and aux "
            f"outputs (torch >= 2.9)"
        )
    if p.dropout_p > 0.0:
        return "FlexAttention has no dropout (backend='triton' or 'blocks' have)"
    if p.device.type == "cuda":
        if p.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return f"its CUDA kernel computes float16, bfloat16 or float32, got {p.dtype}"
        if min(p.head_dim, p.value_dim) < 16:
            return (
                f"its CUDA kernel needs head sizes of at least 16, got D={p.head_dim}, "
                f"Dv={p.value_dim}"
            )
    return None


def seen_failing(problem: Problem) -> str | None:
    """A call FlexAttention accepts but was seen failing to compile on a GPU, in one line, or
    None: T5's bucketed relative bias ("No valid triton configs", shared memory; an H200 at
    D=128, benchmarks/gpu_routing.py). ``auto`` sends such calls elsewhere; an explicit
    ``backend='flex'`` still tries (it may compile at other sizes)."""
    leaves = modifiers_in(problem.score_mod) if problem.score_mod is not None else []
    if any(isinstance(leaf, RelativeBias) for leaf in leaves):
        return "its compiled kernel found no configuration for T5's relative bias (an H200, D=128)"
    return None


# -- masks as mask_mods -------------------------------------------------------------------------


def mask_mod_of(mask: Mask, q_len: int, kv_len: int, device: torch.device):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx) -> bool`` equal to ``mask.allowed``.

    Each call sees scalars (FlexAttention vmaps it); tensors a mask carries (lengths, ids, a
    dense pattern) are moved to ``device`` once, here, and indexed inside.
    """
    offset = kv_len - q_len

    def pick(rows: Tensor, b):  # a per-batch tensor with 1 row broadcasts to every batch row
        return rows[b] if rows.shape[0] > 1 else rows[0]

    if isinstance(mask, Causal):
        return lambda b, h, q, kv: q + offset >= kv
    if isinstance(mask, SlidingWindow):
        size = mask.size

        def window(b, h, q, kv):
            distance = q + offset - kv
            return (distance >= 0) & (distance < size)

        return window
    if isinstance(mask, KeyPadding):
        lengths = to_device(mask.values, device)
        if mask.side == "right":
            return lambda b, h, q, kv: kv < pick(lengths, b)
        return lambda b, h, q, kv: kv >= kv_len - pick(lengths, b)
    if isinstance(mask, PrefixLM):
        prefix = to_device(mask.values, device)
        return lambda b, h, q, kv: (kv < pick(prefix, b)) | (kv <= q + offset)
    if isinstance(mask, Document):
        ids = to_device(mask.ids, device)  # (Bm, Lk)
        return lambda b, h, q, kv: pick(ids, b)[q + offset] == pick(ids, b)[kv]
    if isinstance(mask, Dense):
        allowed = to_device(mask.tensor, device)  # (Bm, Hm, Lq or 1, Lk or 1)

        def dense(b, h, q, kv):
            t = pick(allowed, b)
            t = t[h] if t.shape[0] > 1 else t[0]
            t = t[q] if t.shape[0] > 1 else t[0]
            return t[kv] if t.shape[0] > 1 else t[0]

        return dense
    if isinstance(mask, Or):  # before And: Or is an And
        left, right = (mask_mod_of(m, q_len, kv_len, device) for m in (mask.left, mask.right))
        return lambda b, h, q, kv: left(b, h, q, kv) | right(b, h, q, kv)
    if isinstance(mask, And):
        left, right = (mask_mod_of(m, q_len, kv_len, device) for m in (mask.left, mask.right))
        return lambda b, h, q, kv: left(b, h, q, kv) & right(b, h, q, kv)
    if isinstance(mask, Not):
        inner = mask_mod_of(mask.inner, q_len, kv_len, device)
        return lambda b, h, q, kv: ~inner(b, h, q, kv)
    # A mask class atenea does not know: ask it, one pair at a time.
    return lambda b, h, q, kv: mask.allowed(q[None], kv[None], q_len, kv_len)[
        b if mask.batch_heads()[0] > 1 else 0, h if mask.batch_heads()[1] > 1 else 0, 0, 0
    ]


# -- block masks, remembered with their tile lists ------------------------------------------------


def block_mask_of(problem: Problem, device: torch.device):
    """The ``BlockMask`` of the call's mask (``None`` for no mask): from the tile lists, with
    the translated ``mask_mod`` for the partial blocks. Built once per (cached) tile lists."""
    from torch.nn.attention.flex_attention import BlockMask

    p = problem
    if p.mask is None:
        return None
    lists = tile_lists(p.mask, p.q_len, p.kv_len, device, TILE, TILE)
    return lists.remember(
        "flex_block_mask",
        lambda: BlockMask.from_kv_blocks(
            lists.partial_counts,
            lists.partial_indices,
            lists.full_counts,
            lists.full_indices,
            BLOCK_SIZE=TILE,
            mask_mod=mask_mod_of(p.mask, p.q_len, p.kv_len, device),
            seq_lengths=(p.q_len, p.kv_len),
        ),
    )


# -- the call -------------------------------------------------------------------------------------


# Every new length, mask rule or score modifier is a recompile of FlexAttention, and past
# dynamo's per-function limit (8 by default) dynamo silently runs it unfused, materializing
# every score: 300x slower, and out of memory at 32k (seen on an H200). A program that meets
# more shapes than that (lengths in evaluation, masks per layer) keeps the fused kernel.
RECOMPILE_LIMIT = 64


@functools.cache
def _compiled():
    from torch.nn.attention.flex_attention import flex_attention

    if "recompile_limit" in inspect.signature(torch.compile).parameters:
        return torch.compile(flex_attention, dynamic=False, recompile_limit=RECOMPILE_LIMIT)
    import torch._dynamo as dynamo  # an older torch: only the process-wide setting

    dynamo.config.recompile_limit = max(dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=False)


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {device: copy}


def _on_device(score_mod, device: torch.device):
    """FlexAttention traces the modifier into its kernel, where no tensor can move between
    devices: a module whose buffers sit elsewhere (``scores.alibi(8)`` made on the CPU, as
    users do) runs as a copy on the call's device, made once per module and device (kept
    beside the module, not in it). A trainable tensor on another device cannot be copied (its
    gradient would be lost): an error says to move the module."""
    if not isinstance(score_mod, torch.nn.Module):
        return score_mod
    elsewhere = [t for t in (*score_mod.parameters(), *score_mod.buffers()) if t.device != device]
    if not elsewhere:
        return score_mod
    if any(isinstance(t, torch.nn.Parameter) for t in elsewhere):
        raise ValueError(
            f"backend='flex': the score_mod's parameters are not on {device}, the inputs' "
            f"device; move it first (score_mod.to({str(device)!r}))"
        )
    copies = _COPIES.setdefault(score_mod, {})
    if str(device) not in copies:
        copies[str(device)] = copy.deepcopy(score_mod).to(device)
    return copies[str(device)]


def _absolute_positions(score_mod, offset: int):
    """atenea's score modifiers take absolute query positions; FlexAttention passes rows."""
    if score_mod is None:
        return None
    if offset == 0:
        return score_mod
    return lambda s, b, h, q, kv: score_mod(s, b, h, q + offset, kv)


def flex_attention_call(
    q: Tensor, k: Tensor, v: Tensor, problem: Problem, need_lse: bool
) -> tuple[Tensor, Tensor | None]:
    """Returns ``out (B, Hq, Lq, Dv)`` and, if ``need_lse``, ``lse (B, Hq, Lq)`` float32 (the
    kernel's own; ``-inf`` on a row with no allowed key, whose output is 0)."""
    from torch.nn.attention.flex_attention import AuxRequest, flex_attention

    p = problem
    if q.device.type != "cuda" and torch.is_grad_enabled():
        if q.requires_grad or k.requires_grad or v.requires_grad:
            raise ValueError(
                f"backend='flex': FlexAttention has no backward on {q.device.type} tensors "
                f"(CUDA only); use backend='auto' or 'blocks', or torch.no_grad()"
            )
    block_mask = block_mask_of(p, q.device)
    score_mod = _absolute_positions(_on_device(p.score_mod, q.device), p.offset)
    run = _compiled() if q.device.type == "cuda" else flex_attention
    with warnings.catch_warnings():
        # Off CUDA the unfused reference path is the point (tests); say nothing about it.
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile")
        out, aux = run(
            q,
            k,
            v,
            score_mod=score_mod,
            block_mask=block_mask,
            scale=p.scale,
            enable_gqa=p.group > 1,
            return_aux=AuxRequest(lse=True),
        )
    lse = aux.lse.detach().float() if need_lse else None
    return out, lse
