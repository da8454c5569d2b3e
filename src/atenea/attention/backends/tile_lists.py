"""Tile lists: a mask's tile table as the per-row lists a block-sparse GPU kernel walks.

For every ``(batch row, head, query tile)`` the key tiles to visit, split in two sorted lists:
*partial* tiles (the kernel evaluates the mask inside) and *full* tiles (every pair may attend:
no mask). Empty tiles are in neither list and never touched. The transposed lists (per key tile,
the query tiles that visit it) drive the dK/dV pass of a backward.

This is the layout of FlexAttention's ``BlockMask`` (``kv_num_blocks``, ``kv_indices``,
``full_kv_num_blocks``, ``full_kv_indices``) and of atenea's own Triton kernel. It is built from
``mask.tile_kinds`` -- O(number of tiles), never an ``Lq x Lk`` tensor -- and cached per (mask,
lengths, tiles, device), so a training loop builds it once. A mask whose ids or lengths are on
the GPU (packed documents from the batch, a new mask every step) has its table and lists built
there, with nothing read back to the host (what the backends derive may read: the Triton plan's
bitmaps and dead keys, and key padding's range check, once per call).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention.masks import EMPTY, FULL, PARTIAL, Mask
from atenea.attention.masks.base import And, Not
from atenea.attention.masks.rules import Causal, SlidingWindow
from atenea.attention.transfer import to_device

TILE = 128  # FlexAttention's default sparse block, and atenea's Q_TILE / K_TILE


@dataclass(frozen=True)
class TileLists:
    """Which key tiles each query tile visits. ``Bm``/``Hm`` are the mask's own batch and head
    sizes (1 = the same lists for every row/head: broadcast them at stride 0).

    Attributes:
        partial_counts: int32 ``(Bm, Hm, n_q)``: how many partial key tiles query tile ``i`` has.
        partial_indices: int32 ``(Bm, Hm, n_q, n_k)``: their indices, ascending, in the first
            ``partial_counts`` slots (the rest is padding: 0).
        full_counts, full_indices: the same for full tiles.
    """

    q_tile: int
    k_tile: int
    q_len: int
    kv_len: int
    partial_counts: Tensor
    partial_indices: Tensor
    full_counts: Tensor
    full_indices: Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(Bm, Hm, n_q, n_k)``."""
        return tuple(self.partial_indices.shape)

    def remember(self, key: Hashable, build):
        """``build()``, computed once per lists object: what a backend derives from the lists
        (the transpose, FlexAttention's block mask, the Triton kernel's launch plans) lives as
        long as they do (they are cached)."""
        memo = self.__dict__.setdefault("_memo", {})  # frozen: a memo, not a field
        if key not in memo:
            memo[key] = build()
        return memo[key]

    def transposed(self) -> TileLists:
        """Per key tile, the query tiles that visit it (``n_q`` and ``n_k`` swap roles): the lists
        a dK/dV pass walks. ``q_tile``/``k_tile`` and the lengths swap with them. Built once per
        lists object, not at every training step."""
        return self.remember("transposed", lambda: _transposed(self))

    def edges_partial(self, rows: bool = True, cols: bool = True) -> TileLists:
        """These lists with every FULL tile of a ragged last row (``rows``) and/or column
        (``cols``) of tiles (a length not a multiple of its tile) made PARTIAL: then a full
        tile's queries (rows) or keys (cols) all exist, and a kernel's full-tile steps need no
        bound on them at any length (Triton's ``EVEN``: the forward and dQ walk keys, the
        dK/dV pass queries). The lists themselves when nothing would change. Built once per
        lists object and choice, on their device (nothing read back)."""
        rows = rows and self.q_len % self.q_tile != 0
        cols = cols and self.kv_len % self.k_tile != 0
        if not (rows or cols):
            return self
        return self.remember(
            f"edges_partial{rows:d}{cols:d}", lambda: _edges_partial(self, rows, cols)
        )

    def host_kinds(self) -> Tensor:
        """``kinds()`` on the host: the table ``tile_lists`` built the lists from (kept, so no
        read back from the device), else rebuilt from the lists and read back once."""
        return self.remember("host_kinds", lambda: self.kinds().cpu())

    def kinds(self) -> Tensor:
        """The tile table back from the lists, int8 ``(Bm, Hm, n_q, n_k)`` (EMPTY/PARTIAL/FULL),
        on their device."""
        kinds = torch.full(self.shape, EMPTY, dtype=torch.int8, device=self.partial_counts.device)
        for counts, indices, kind in (
            (self.partial_counts, self.partial_indices, PARTIAL),
            (self.full_counts, self.full_indices, FULL),
        ):
            n_k = indices.shape[-1]
            valid = torch.arange(n_k, device=indices.device) < counts.unsqueeze(-1).long()
            # padding slots hold index 0 too: add the marks up so they cannot erase a real one
            marks = torch.zeros(self.shape, dtype=torch.int32, device=indices.device)
            marks.scatter_add_(-1, indices.long(), valid.int())
            kinds.masked_fill_(marks > 0, kind)  # (kinds[mask] = ... would wait for a GPU)
        return kinds


def from_kinds(kinds: Tensor, q_tile: int, k_tile: int, q_len: int, kv_len: int) -> TileLists:
    """Lists from a tile table ``(Bm, Hm, n_q, n_k)`` of EMPTY/PARTIAL/FULL (any device)."""
    partial_counts, partial_indices = _sorted_list(kinds == PARTIAL)
    full_counts, full_indices = _sorted_list(kinds == FULL)
    return TileLists(
        q_tile, k_tile, q_len, kv_len, partial_counts, partial_indices, full_counts, full_indices
    )


def _sorted_list(selected: Tensor) -> tuple[Tensor, Tensor]:
    """For a boolean ``(..., n)``: how many are set ``(...,)`` and their indices ascending in the
    first slots ``(..., n)`` (a stable sort puts the selected first, in index order)."""
    counts = selected.sum(-1, dtype=torch.int32)
    order = torch.argsort((~selected).to(torch.int8), dim=-1, stable=True)
    indices = torch.where(
        torch.arange(selected.shape[-1], device=selected.device) < counts.unsqueeze(-1).long(),
        order,
        0,
    )
    return counts, indices.to(torch.int32)


def _edges_partial(lists: TileLists, rows: bool, cols: bool) -> TileLists:
    def demoted(kinds: Tensor) -> Tensor:
        kinds = kinds.clone()
        for ragged, edge in ((rows, kinds[..., -1, :]), (cols, kinds[..., -1])):
            if ragged:
                edge.masked_fill_(edge == FULL, PARTIAL)  # a view: the table changes
        return kinds

    edges = from_kinds(
        demoted(lists.kinds()), lists.q_tile, lists.k_tile, lists.q_len, lists.kv_len
    )
    host = lists.__dict__.get("_memo", {}).get("host_kinds")
    if host is not None:  # the table the lists were built from, kept on the host
        edges.remember("host_kinds", lambda: demoted(host))
    return edges


def _transposed(lists: TileLists) -> TileLists:
    kinds = lists.kinds().transpose(-1, -2)
    return from_kinds(kinds, lists.k_tile, lists.q_tile, lists.kv_len, lists.q_len)


# -- the cache ----------------------------------------------------------------------------------

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 64


def _parameters_only(mask: Mask) -> bool:
    """Whether the mask is a function of its constructor's numbers alone (causal, windows and
    their algebra): then two equal-looking masks share lists, even if built at every call."""
    if isinstance(mask, (Causal, SlidingWindow)):
        return True
    if isinstance(mask, And):  # Or is an And
        return _parameters_only(mask.left) and _parameters_only(mask.right)
    if isinstance(mask, Not):
        return _parameters_only(mask.inner)
    return False


def tile_lists(
    mask: Mask | None,
    q_len: int,
    kv_len: int,
    device: torch.device | str = "cpu",
    q_tile: int = TILE,
    k_tile: int = TILE,
) -> TileLists:
    """The tile lists of ``mask`` for ``q_len`` queries and ``kv_len`` keys, on ``device``.

    ``mask=None`` means every tile is full. Cached: a mask made of numbers only (``causal()``,
    ``sliding_window(w)`` and their ``&``/``|``/``~``) is looked up by what it is, any other
    (lengths, document ids, a dense tensor) by the object itself, as long as it lives.
    """
    device = torch.device(device)
    owner = None
    if mask is None:
        key = ("none",)
    elif _parameters_only(mask):
        key = ("rule", repr(mask))
    else:
        key, owner = ("object", id(mask)), weakref.ref(mask)
    key = (*key, q_len, kv_len, q_tile, k_tile, str(device))
    found = _CACHE.get(key)
    if found is not None and (found[0] is None or found[0]() is mask):
        _CACHE.move_to_end(key)
        return found[1]

    if mask is None:
        n_q, n_k = -(-q_len // q_tile), -(-kv_len // k_tile)
        kinds = torch.full((1, 1, n_q, n_k), FULL, dtype=torch.int8)
    else:
        kinds = mask.tile_kinds(q_len, kv_len, q_tile, k_tile)
    lists = from_kinds(to_device(kinds, device), q_tile, k_tile, q_len, kv_len)
    if kinds.device.type == "cpu":  # the table as built (the Triton plan may read it)
        lists.remember("host_kinds", lambda: kinds)
    _CACHE[key] = (owner, lists)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return lists
