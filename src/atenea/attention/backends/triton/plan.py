"""What the Triton kernel needs to know about a call, prepared on the host (no Triton here).

- ``MaskPlan``: how the kernel evaluates the mask inside a *partial* tile. The rule families
  (causal, sliding window, document ids, key padding, prefix LM, and their ``&``) become a few
  numbers and small per-row tensors the kernel compares positions against. Any other mask
  (``|``, ``~``, ``dense``) becomes bitmaps of its partial tiles only, deduplicated: a window
  or a diagonal repeats the same few tiles however long the sequence; and a row of live keys
  (some query may attend them), so that keys no query attends are never read.
- ``ModPlan``: which fused score modifiers apply, in which order (ALiBi, softcap, T5 relative
  bias). Any other Python ``score_mod`` cannot run inside the kernel: ``unfusable`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention.backends.tile_lists import TileLists
from atenea.attention.masks import FULL, PARTIAL, Mask
from atenea.attention.masks.base import And, Or
from atenea.attention.masks.rules import Causal, Document, KeyPadding, PrefixLM, SlidingWindow
from atenea.attention.problem import Problem
from atenea.attention.scores import (
    ALiBi,
    RelativeBias,
    SoftCap,
    modifiers_in,
    relative_position_bucket,
)
from atenea.attention.transfer import to_device

NO_PADDING, PAD_RIGHT, PAD_LEFT = 0, 1, 2
NO_BIAS, BEFORE_CAP, AFTER_CAP = 0, 1, 2  # where an additive bias sits relative to softcap


@dataclass
class MaskPlan:
    """Parameters of the in-kernel mask, on the tile lists' device. Tensors keep the mask's own
    batch size ``Bm`` (and heads ``Hm``): 1 broadcasts, and the launch reads it at stride 0."""

    causal: bool = False
    window: int = 0  # sliding window size; 0 = none
    document: Tensor | None = None  # int32 (Bm, Lk) document id of every key position
    padding_side: int = NO_PADDING
    padding: Tensor | None = None  # int32 (Bm,) real keys per row
    prefix: Tensor | None = None  # int32 (Bm,) prefix length per row
    bitmaps: Tensor | None = None  # uint8 (n_distinct, q_tile, k_tile): partial tiles' masks
    bitmap_index: Tensor | None = None  # int32 (Bm, Hm, n_q, n_k): which bitmap a tile uses
    # uint8 (Bm, Lk), with bitmaps where some key is dead: 1 where some query of the row (any
    # head) may attend the key. The others are never loaded, like padding: whatever they hold
    # (NaN) is unread. None when every key is live (the kernel then checks none).
    live_keys: Tensor | None = None


def _leaves(mask: Mask) -> list[Mask]:
    """The masks an ``&`` chain joins (``Or`` subclasses ``And`` and is not a chain)."""
    if isinstance(mask, And) and not isinstance(mask, Or):
        return _leaves(mask.left) + _leaves(mask.right)
    return [mask]


def mask_plan(mask: Mask | None, lists: TileLists) -> MaskPlan:
    """The ``MaskPlan`` of ``mask``, whose tile lists are ``lists``: derived once per lists
    object (``TileLists.remember``). The lists are cached per mask object, or per rule for
    masks made of numbers only, and per lengths, tiles and device; so the plan (per-row tensors,
    bitmaps) goes to the device once and lives exactly as long as the lists it came from."""
    if mask is None:
        return MaskPlan()
    return lists.remember("triton_mask_plan", lambda: _mask_plan(mask, lists))


def _mask_plan(mask: Mask, lists: TileLists) -> MaskPlan:
    plan = MaskPlan()
    device = lists.partial_counts.device

    def on_device(values: Tensor) -> Tensor:
        return to_device(values, device, torch.int32)

    leaves = _leaves(mask)
    kinds = [type(leaf) for leaf in leaves]
    family = (Causal, SlidingWindow, Document, KeyPadding, PrefixLM)
    if any(k not in family for k in kinds) or any(kinds.count(k) > 1 for k in set(kinds)):
        return _bitmap_plan(mask, lists)
    for leaf in leaves:
        if isinstance(leaf, Causal):
            plan.causal = True
        elif isinstance(leaf, SlidingWindow):
            plan.window = leaf.size
        elif isinstance(leaf, Document):
            plan.document = on_device(leaf.ids)  # (Bm, Lk)
        elif isinstance(leaf, KeyPadding):
            plan.padding = on_device(leaf.values.reshape(-1))
            plan.padding_side = PAD_RIGHT if leaf.side == "right" else PAD_LEFT
        else:
            plan.prefix = on_device(leaf.values.reshape(-1))
    if lists.q_len >= lists.kv_len or not (plan.window or plan.document is not None):
        return plan  # bottom-right aligned, each key's own position is a query: none is dead
    tiles = _tiles(mask, lists)
    live = _rule_live_keys(lists, plan, tiles)
    if live is None:
        return plan
    lengths = live.sum(1)
    if plan.padding_side != PAD_RIGHT and torch.equal(live, _suffixes(lengths, lists.kv_len)):
        plan.padding, plan.padding_side = on_device(lengths), PAD_LEFT
        return plan
    # Dead keys scattered (documents out of order) or beside right padding: the bitmaps'
    # route, which checks every key (LIVE). Rare, and slower than the rules: correct first.
    return _bitmap_plan(mask, lists, tiles)


def _tiles(mask: Mask, lists: TileLists) -> tuple[Tensor, list]:
    """``lists.host_kinds()`` and what ``_partial_tiles`` gives for them: the mask over its
    partial tiles, computed once for the live keys and the bitmaps. Held together: the partial
    area in booleans (a few MB at Lq=16k, Lk=32k with a 1024 window), once per lists object."""
    kinds = lists.host_kinds()
    return kinds, list(_partial_tiles(mask, lists, kinds))


def _bitmap_plan(mask: Mask, lists: TileLists, tiles: tuple | None = None) -> MaskPlan:
    """The plan of a mask evaluated through bitmaps of its partial tiles, with the live keys
    when some key is dead. ``tiles``: ``_tiles(mask, lists)`` when already computed."""
    device = lists.partial_counts.device
    bitmaps, index, live = _build_bitmaps(lists, *(tiles or _tiles(mask, lists)))
    plan = MaskPlan(bitmaps=to_device(bitmaps, device), bitmap_index=to_device(index, device))
    if not bool(live.all()):  # dead keys exist: the kernel checks each key (LIVE)
        plan.live_keys = to_device(live, device)
    return plan


def _rule_live_keys(lists: TileLists, plan: MaskPlan, tiles: tuple) -> Tensor | None:
    """With fewer queries than keys, a window or documents leave keys no query attends: those
    before the first query's window, or in documents other than the queries'. Bool ``(Bm, Lk)``
    on the CPU, True where some query of the row may attend the key (left padding of the mask
    counts as dead too); None when every key is live or dead only through the mask's own key
    padding (the kernel skips those already). ``tiles``: ``_tiles(mask, lists)``.

    The caller reads dead keys that are a prefix of every row (a window; packed documents) as
    left padding of ``live.sum(1)`` keys: the kernel never reads them, and whatever they hold
    (NaN) changes nothing. Any other pattern goes to the bitmaps, which check each key."""
    live = _live_keys(lists, *tiles).bool()
    return None if bool((live | _padded(plan, lists.kv_len)).all()) else live


def _padded(plan: MaskPlan, kv_len: int) -> Tensor:
    """Bool ``(Bm, Lk)`` (or ``(1, 1)``): the keys the plan's own key padding already keeps the
    kernel from reading."""
    if plan.padding is None:
        return torch.zeros(1, 1, dtype=torch.bool)
    real = plan.padding.cpu().long()[:, None]
    if plan.padding_side == PAD_RIGHT:
        return torch.arange(kv_len) >= real
    return torch.arange(kv_len) < kv_len - real


def _suffixes(lengths: Tensor, kv_len: int) -> Tensor:
    """Bool ``(Bm, Lk)``: True on the last ``lengths[b]`` keys of each row."""
    return torch.arange(kv_len) >= kv_len - lengths[:, None]


def _partial_tiles(mask: Mask, lists: TileLists, kinds: Tensor):
    """Per query tile with partial key tiles: ``(i, selected, cols, allowed)``, the key tiles
    partial in some batch row or head, their key positions and the mask over them,
    ``(Bm, Hm, q_tile, len(cols))`` on the CPU (False past the lengths). One ``mask.allowed``
    call per query tile over its partial tiles only: the cost is the partial area, never
    ``Lq x Lk``. ``kinds``: ``lists.host_kinds()``."""
    q_tile, k_tile, q_len, kv_len = lists.q_tile, lists.k_tile, lists.q_len, lists.kv_len
    partial = kinds == PARTIAL  # (Bm, Hm, n_q, n_k)
    mask_b, mask_h, n_q, _ = partial.shape
    for i in range(n_q):
        selected = partial[:, :, i].any(0).any(0).nonzero().flatten()  # key tiles, any row/head
        if selected.numel() == 0:
            continue
        rows = torch.arange(i * q_tile, (i + 1) * q_tile)
        cols = (selected[:, None] * k_tile + torch.arange(k_tile)).flatten()
        inside = (rows[:, None] < q_len) & (cols[None, :] < kv_len)
        allowed = mask.allowed(rows.clamp(max=q_len - 1), cols.clamp(max=kv_len - 1), q_len, kv_len)
        yield i, selected, cols, (allowed.cpu() & inside).expand(mask_b, mask_h, -1, -1)


def _live_keys(lists: TileLists, kinds: Tensor, parts: list) -> Tensor:
    """uint8 ``(Bm, Lk)`` on the CPU: 1 where some query of the batch row (any head) may attend
    the key: in a full tile, or where a partial tile's mask allows it (``parts``: what
    ``_partial_tiles`` gave)."""
    live = (kinds == FULL).any(2).any(1).repeat_interleave(lists.k_tile, dim=-1)  # (Bm, n_k*k)
    for _, _, cols, allowed in parts:
        live[:, cols] |= allowed.any(2).any(1)
    return live[:, : lists.kv_len].to(torch.uint8)


def _build_bitmaps(lists: TileLists, kinds: Tensor, parts: list) -> tuple[Tensor, Tensor, Tensor]:
    """Bitmaps of the partial tiles, deduplicated, the table saying which one each tile uses,
    and the live keys (on the CPU), from ``_tiles(mask, lists)``'s ``kinds`` and ``parts``."""
    q_tile, k_tile = lists.q_tile, lists.k_tile
    partial = kinds == PARTIAL  # (Bm, Hm, n_q, n_k)
    mask_b, mask_h, n_q, n_k = partial.shape
    tiles, where = [], []
    for i, selected, _, allowed in parts:
        blocks = allowed.reshape(mask_b, mask_h, q_tile, -1, k_tile).permute(0, 1, 3, 2, 4)
        keep = partial[:, :, i][:, :, selected]  # (Bm, Hm, n_selected)
        tiles.append(blocks[keep])
        b, h, j = keep.nonzero(as_tuple=True)
        where.append(torch.stack([b, h, torch.full_like(b, i), selected[j]], dim=1))
    index = torch.zeros(mask_b, mask_h, n_q, n_k, dtype=torch.int32)
    live = _live_keys(lists, kinds, parts)
    if not tiles:
        return torch.zeros(1, q_tile, k_tile, dtype=torch.uint8), index, live
    stacked = torch.cat(tiles).flatten(1)
    distinct, inverse = torch.unique(stacked, dim=0, return_inverse=True)
    b, h, i, j = torch.cat(where).unbind(1)
    index[b, h, i, j] = inverse.to(torch.int32)
    return distinct.view(-1, q_tile, k_tile).to(torch.uint8), index, live


def modifier_paths(mods: ModPlan, dropout: bool) -> dict:
    """The constexprs of the score modifiers and dropout, with the values the launch passes
    (a bias stage; 0/False: off): what decides whether full tiles skip their bounds, before
    the mask's plan exists (``launch.skips_bounds``)."""
    return dict(ALIBI=mods.alibi, CAP=mods.cap > 0, RELATIVE=mods.relative, DROPOUT=dropout)


def kernel_paths(mask: MaskPlan, modifiers: dict) -> dict:
    """The constexprs that switch the kernels' optional code paths, with the values the launch
    passes (a padding side; 0/False: off): the mask's, and ``modifiers``
    (``modifier_paths``)."""
    return dict(
        CAUSAL=mask.causal,
        WINDOWED=mask.window > 0,
        DOCUMENT=mask.document is not None,
        PADDING=mask.padding_side,
        PREFIX=mask.prefix is not None,
        BITMAP=mask.bitmaps is not None,
        LIVE=mask.live_keys is not None,
        **modifiers,
    )


def switches(paths: dict) -> frozenset[str]:
    """The names of the code paths ``paths`` (``kernel_paths``, or any such constexpr dict)
    turns on: what picks a call's block sizes (``configs.configs_for``), by the names
    check_sm90 compiles."""
    return frozenset(name for name, on in paths.items() if on)


# -- score modifiers --------------------------------------------------------------------------


@dataclass
class ModPlan:
    """The fused score modifiers: ``s = q.k * scale``, then the biases placed ``BEFORE_CAP``,
    then ``cap * tanh(s / cap)``, then the biases placed ``AFTER_CAP``."""

    alibi: int = NO_BIAS
    alibi_slopes: Tensor | None = None  # float32 (Hq,)
    alibi_symmetric: bool = False
    cap: float = 0.0  # 0 = no softcap
    relative: int = NO_BIAS
    relative_module: RelativeBias | None = None


def unfusable(score_mod, problem: Problem) -> str | None:
    """Why ``score_mod`` cannot run inside the kernel, or None when it can."""
    if score_mod is None:
        return None
    leaves = modifiers_in(score_mod)
    for leaf in leaves:
        if not isinstance(leaf, (ALiBi, SoftCap, RelativeBias)):
            return (
                f"the kernel fuses only scores.alibi, softcap, relative_bias and their compose; "
                f"{type(leaf).__name__} is a Python score_mod (use backend='blocks')"
            )
    kinds = [type(leaf) for leaf in leaves]
    if any(kinds.count(k) > 1 for k in set(kinds)):
        return "the kernel fuses at most one alibi, one softcap and one relative_bias"
    return None


def mod_plan(score_mod, problem: Problem, device) -> ModPlan:
    """The ``ModPlan`` of a fusable ``score_mod`` (see ``unfusable``)."""
    plan = ModPlan()
    if score_mod is None:
        return plan
    stage = BEFORE_CAP
    for leaf in modifiers_in(score_mod):
        if isinstance(leaf, SoftCap):
            plan.cap, stage = leaf.cap, AFTER_CAP
        elif isinstance(leaf, ALiBi):
            plan.alibi, plan.alibi_symmetric = stage, leaf.symmetric
            slopes = leaf.slopes[: problem.q_heads]
            plan.alibi_slopes = to_device(slopes, device, torch.float32).contiguous()
        else:
            plan.relative, plan.relative_module = stage, leaf
    return plan


def relative_bias_by_distance(module: RelativeBias, problem: Problem) -> Tensor:
    """The relative bias of every query head at every distance ``k_pos - q_pos``, float32
    ``(Hq, Lq + Lk - 1)`` (column ``d + Lk - 1`` holds distance ``d``), differentiable with
    respect to the table. The kernel reads it instead of bucketing in-kernel (torch's log
    decides the buckets, so they match the reference exactly); its gradient flows back to the
    table through this gather."""
    weight = module.table.weight
    distance = torch.arange(-(problem.kv_len - 1), problem.q_len, device=weight.device)
    buckets = relative_position_bucket(
        distance, module.bidirectional, module.num_buckets, module.max_distance
    )
    return weight[buckets, : problem.q_heads].t().float().contiguous()
