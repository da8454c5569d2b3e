"""Attention masks as objects: which (query, key) pairs may attend.

Polarity, once and for all: **``True`` means "may attend"**, everywhere in atenea — in
materialized tensors, in tiles, in ``masks.dense(...)`` inputs. ``False`` means the pair is
masked out (its score becomes ``-inf`` before the softmax).

A mask is not a tensor. It knows the rule, and from the rule it can

(a) ``materialize(q_len, kv_len)``: a boolean tensor ``(Bm, Hm, Lq, Lk)``, where ``Bm`` is 1 or
    the batch size and ``Hm`` is 1 or the number of query heads (it broadcasts against
    ``(B, H, Lq, Lk)``);
(b) ``tile_kinds(q_len, kv_len, q_tile, k_tile)``: for every tile of the score matrix, whether
    it is EMPTY (nothing may attend), FULL (everything may attend) or PARTIAL, without ever
    building the ``Lq x Lk`` matrix;
(c) ``allowed(rows, cols, q_len, kv_len)``: the boolean block for any rows and columns, which is
    how a PARTIAL tile gets its mask.

Positions. When ``Lq != Lk`` (decoding with a cache, chunked prefill) the queries are the *last*
``Lq`` positions: query row ``i`` sits at absolute position ``i + Lk - Lq`` ("bottom-right"
alignment, as FlashAttention >= 2.1 and every KV cache). Keys sit at ``0 .. Lk-1``.

Masks combine with ``&`` (both allow), ``|`` (either allows) and ``~`` (swap). Tile kinds
combine exactly as the booleans do once encoded EMPTY=0 < PARTIAL=1 < FULL=2: ``&`` is the
elementwise minimum, ``|`` the maximum, ``~`` is ``2 - kind``. That is conservative (``m & ~m``
is reported PARTIAL, not EMPTY) but never wrong: a PARTIAL tile is computed with its exact mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

EMPTY, PARTIAL, FULL = 0, 1, 2


def _bottom_right_offset(q_len: int, kv_len: int) -> int:
    """Absolute position of query row 0: the queries are the last ``q_len`` positions."""
    return kv_len - q_len


def _tile_bounds(length: int, tile: int, offset: int = 0) -> tuple[Tensor, Tensor]:
    """First and last (inclusive) absolute position of each tile along one axis: ``(n,)`` each."""
    starts = torch.arange(0, length, tile)
    ends = torch.clamp(starts + tile, max=length) - 1
    return starts + offset, ends + offset


class Mask:
    """Base class of every mask. ``True`` = may attend (see the module docstring).

    Subclasses implement ``allowed``, ``tile_kinds``, ``batch_heads`` and ``validate``.
    """

    #: True when ``allowed`` depends only on ``q_pos - k_pos`` (causal, sliding window): then
    #: every tile at the same distance from the diagonal has the same mask, and the tiled
    #: backend builds it once.
    shift_invariant = False

    # -- the three capabilities -------------------------------------------------------------
    def allowed(self, rows: Tensor, cols: Tensor, q_len: int, kv_len: int) -> Tensor:
        """Boolean block ``(Bm, Hm, len(rows), len(cols))``: ``True`` where query ``rows[i]`` may
        attend to key ``cols[j]``. ``rows`` are query row indices (``0 .. Lq-1``), ``cols`` key
        indices (``0 .. Lk-1``); both 1-D int64 tensors on the device wanted for the result."""
        raise NotImplementedError

    def tile_kinds(self, q_len: int, kv_len: int, q_tile: int, k_tile: int) -> Tensor:
        """Kind of every tile, int8 ``(Bm, Hm, ceil(Lq/q_tile), ceil(Lk/k_tile))`` with values
        ``EMPTY`` (0, no pair may attend), ``PARTIAL`` (1) or ``FULL`` (2, every pair may attend).
        Costs O(number of tiles), not O(Lq x Lk), for every structured mask."""
        raise NotImplementedError

    def batch_heads(self) -> tuple[int, int]:
        """``(Bm, Hm)``: the batch and head sizes this mask carries (1 = broadcast)."""
        return 1, 1

    def validate(self, batch: int, heads: int, q_len: int, kv_len: int) -> None:
        """Raise ``ValueError`` naming the argument when the mask cannot apply to a call with
        these sizes. The default checks that batch and head dimensions broadcast."""
        mask_batch, mask_heads = self.batch_heads()
        if mask_batch not in (1, batch):
            raise ValueError(
                f"mask: {self!r} carries a batch of {mask_batch} but the attention batch is "
                f"{batch}; expected 1 or {batch}"
            )
        if mask_heads not in (1, heads):
            raise ValueError(
                f"mask: {self!r} carries {mask_heads} heads but the queries have {heads}; "
                f"expected 1 or {heads}"
            )

    # -- conveniences built on the three ----------------------------------------------------
    def materialize(
        self, q_len: int, kv_len: int, device: torch.device | str | None = None
    ) -> Tensor:
        """The whole boolean mask ``(Bm, Hm, Lq, Lk)``; ``True`` = may attend. Builds the
        ``Lq x Lk`` matrix: meant for small inputs, the dense backend, pictures and tests. The
        result is remembered for the last sizes asked (every layer of a model asks for the same
        one) and must not be modified."""

        def compute():
            rows = torch.arange(q_len, device=device)
            cols = torch.arange(kv_len, device=device)
            return self.allowed(rows, cols, q_len, kv_len)

        return self._remember(("allowed", q_len, kv_len, str(device)), compute)

    def empty_rows(self, q_len: int, kv_len: int, device=None) -> Tensor | None:
        """Queries that may attend to nothing, ``(Bm, Hm, Lq)`` bool, or None when there are
        none (remembered like ``materialize``)."""

        def compute():
            empty = ~self.materialize(q_len, kv_len, device).any(-1)
            return empty if bool(empty.any()) else None

        return self._remember(("empty", q_len, kv_len, str(device)), compute)

    def _remember(self, key, compute):
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            if len(memo) > 4:  # one model call asks for one or two sizes: stay small
                memo.clear()
            memo[key] = compute()
        return memo[key]

    def __and__(self, other: Mask | Tensor) -> Mask:
        return And(self, as_mask(other))

    def __rand__(self, other: Tensor) -> Mask:
        return And(as_mask(other), self)

    def __or__(self, other: Mask | Tensor) -> Mask:
        return Or(self, as_mask(other))

    def __ror__(self, other: Tensor) -> Mask:
        return Or(as_mask(other), self)

    def __invert__(self) -> Mask:
        return Not(self)


def as_mask(mask: Mask | Tensor) -> Mask:
    """Accept a ``Mask`` or a boolean tensor (``True`` = may attend) and return a ``Mask``."""
    if isinstance(mask, Mask):
        return mask
    if isinstance(mask, Tensor):
        return dense(mask)
    if callable(mask) and getattr(mask, "__module__", None) == __name__:
        raise TypeError(
            f"mask: got the function masks.{mask.__name__} itself; call it to make a mask, "
            f"e.g. mask=masks.{mask.__name__}(...)"
        )
    raise TypeError(
        f"mask: expected an atenea mask (atenea.masks.causal(), ...) or a boolean tensor "
        f"where True means 'may attend', got {type(mask).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Position-rule masks
# ---------------------------------------------------------------------------------------------


class Causal(Mask):
    """Query at absolute position ``q`` may attend to keys ``k <= q``. ``True`` = may attend."""

    shift_invariant = True

    def allowed(self, rows, cols, q_len, kv_len):
        q_pos = rows + _bottom_right_offset(q_len, kv_len)
        return (cols[None, :] <= q_pos[:, None])[None, None]

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        q_lo, q_hi = _tile_bounds(q_len, q_tile, _bottom_right_offset(q_len, kv_len))
        k_lo, k_hi = _tile_bounds(kv_len, k_tile)
        full = k_hi[None, :] <= q_lo[:, None]
        empty = k_lo[None, :] > q_hi[:, None]
        return _kinds(full, empty)[None, None]

    def __repr__(self):
        return "causal()"


class SlidingWindow(Mask):
    """Query at absolute position ``q`` may attend to keys ``q - size + 1 .. q`` (itself and the
    ``size - 1`` keys before it; causal). ``True`` = may attend."""

    shift_invariant = True

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"sliding_window: size must be an integer >= 1, got {size!r}")
        self.size = size

    def allowed(self, rows, cols, q_len, kv_len):
        q_pos = rows[:, None] + _bottom_right_offset(q_len, kv_len)
        k_pos = cols[None, :]
        return ((k_pos <= q_pos) & (k_pos > q_pos - self.size))[None, None]

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        q_lo, q_hi = _tile_bounds(q_len, q_tile, _bottom_right_offset(q_len, kv_len))
        k_lo, k_hi = _tile_bounds(kv_len, k_tile)
        q_lo, q_hi, k_lo, k_hi = q_lo[:, None], q_hi[:, None], k_lo[None, :], k_hi[None, :]
        full = (k_hi <= q_lo) & (k_lo > q_hi - self.size)
        empty = (k_lo > q_hi) | (k_hi <= q_lo - self.size)
        return _kinds(full, empty)[None, None]

    def __repr__(self):
        return f"sliding_window({self.size})"


class _PerBatchLengths(Mask):
    """Shared handling of a per-batch integer (an int, a sequence or a 1-D tensor)."""

    argument = "lengths"
    bounded_by_keys = True  # a padding length cannot exceed the keys there are

    def __init__(self, lengths: int | Sequence[int] | Tensor, owner: str):
        self._owner = owner
        if isinstance(lengths, bool):
            raise TypeError(f"{owner}: {self.argument} must be integers, got a bool")
        if isinstance(lengths, int):
            values = torch.tensor([lengths], dtype=torch.long)
            self._per_batch = False
        else:
            values = torch.as_tensor(lengths)
            if values.is_floating_point() or values.dtype == torch.bool or values.is_complex():
                raise TypeError(
                    f"{owner}: {self.argument} must be integers, got dtype {values.dtype}"
                )
            if values.dim() != 1:
                raise ValueError(
                    f"{owner}: {self.argument} must be an int or a 1-D sequence with one value "
                    f"per batch row, got shape {tuple(values.shape)}"
                )
            values = values.long()
            self._per_batch = True
        self.values = values

    def batch_heads(self):
        return (self.values.numel() if self._per_batch else 1), 1

    def validate(self, batch, heads, q_len, kv_len):
        super().validate(batch, heads, q_len, kv_len)
        low, high = int(self.values.min()), int(self.values.max())
        upper = kv_len if self.bounded_by_keys else float("inf")
        if low < 0 or high > upper:
            expected = f"[0, Lk={kv_len}]" if self.bounded_by_keys else "[0, inf)"
            raise ValueError(
                f"{self._owner}: {self.argument} must be in {expected}, got values from "
                f"{low} to {high}"
            )

    def _column(self, device) -> Tensor:
        """Values shaped ``(Bm, 1, 1, 1)`` to broadcast against ``(B, H, Lq, Lk)``."""
        return self.values.to(device).view(-1, 1, 1, 1)


class KeyPadding(_PerBatchLengths):
    """Per batch row ``b``, only the ``lengths[b]`` real keys may be attended to; the rest is
    padding. ``side="right"`` (default): keys ``0 .. lengths[b]-1`` are real; ``side="left"``
    (left-padded batches, as in batched generation): the last ``lengths[b]`` keys are real.
    ``True`` = may attend."""

    def __init__(self, lengths, side: str = "right"):
        super().__init__(lengths, "key_padding")
        if side not in ("right", "left"):
            raise ValueError(f"key_padding: side must be 'right' or 'left', got {side!r}")
        self.side = side

    def allowed(self, rows, cols, q_len, kv_len):
        lengths = self._column(cols.device)
        keys = cols.view(1, 1, 1, -1)
        real = keys < lengths if self.side == "right" else keys >= kv_len - lengths
        return real.expand(-1, 1, rows.numel(), -1)

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        k_lo, k_hi = _tile_bounds(kv_len, k_tile)
        lengths = self.values.view(-1, 1)
        if self.side == "right":
            full, empty = k_hi < lengths, k_lo >= lengths
        else:
            first_real = kv_len - lengths
            full, empty = k_lo >= first_real, k_hi < first_real
        n_q = -(-q_len // q_tile)
        return _kinds(full, empty)[:, None, None, :].expand(-1, 1, n_q, -1)

    def __repr__(self):
        values = self.values.tolist() if self._per_batch else int(self.values)
        side = "" if self.side == "right" else ", side='left'"
        return f"key_padding({values}{side})"


class PrefixLM(_PerBatchLengths):
    """Prefix language model: every query may attend to the first ``prefix_len`` keys (the
    prefix is bidirectional), and causally after it: key ``k`` is allowed when
    ``k < prefix_len`` or ``k <= q``. ``prefix_len`` is an int or one value per batch row.
    ``True`` = may attend."""

    argument = "prefix_len"
    bounded_by_keys = False  # a prefix longer than the keys seen so far (chunked prefill) is fine

    def __init__(self, prefix_len):
        super().__init__(prefix_len, "prefix_lm")

    def allowed(self, rows, cols, q_len, kv_len):
        prefix = self._column(cols.device)
        q_pos = (rows + _bottom_right_offset(q_len, kv_len)).view(1, 1, -1, 1)
        keys = cols.view(1, 1, 1, -1)
        return (keys < prefix) | (keys <= q_pos)

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        q_lo, q_hi = _tile_bounds(q_len, q_tile, _bottom_right_offset(q_len, kv_len))
        k_lo, k_hi = _tile_bounds(kv_len, k_tile)
        prefix = self.values.view(-1, 1, 1)
        q_lo, q_hi, k_lo, k_hi = q_lo[:, None], q_hi[:, None], k_lo[None, :], k_hi[None, :]
        full = (k_hi < prefix) | (k_hi <= q_lo)
        empty = (k_lo >= prefix) & (k_lo > q_hi)
        return _kinds(full, empty)[:, None]

    def __repr__(self):
        values = self.values.tolist() if self._per_batch else int(self.values)
        return f"prefix_lm({values})"


class Document(Mask):
    """Packed sequences: a query may attend only to keys of the same document.

    ``ids`` gives the document id of every key position, shape ``(Lk,)`` or ``(B, Lk)``; the
    queries are the last ``Lq`` of those positions (bottom-right), so ``Lq <= Lk``. Combine with
    ``causal()`` for packed language modelling: ``document(ids) & causal()``.
    ``True`` = may attend.
    """

    def __init__(self, ids: Tensor | Sequence[int]):
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"document: ids must be integers, got dtype {ids.dtype}")
        if ids.dim() not in (1, 2):
            raise ValueError(
                f"document: ids must have shape (Lk,) or (B, Lk), got {tuple(ids.shape)}"
            )
        self.ids = ids.long() if ids.dim() == 2 else ids.long()[None]

    def batch_heads(self):
        return self.ids.shape[0], 1

    def validate(self, batch, heads, q_len, kv_len):
        super().validate(batch, heads, q_len, kv_len)
        if self.ids.shape[-1] != kv_len:
            raise ValueError(
                f"document: ids must give one document id per key position, expected length "
                f"Lk={kv_len}, got {self.ids.shape[-1]} (shape {tuple(self.ids.shape)})"
            )
        if q_len > kv_len:
            raise ValueError(
                f"document: queries are the last Lq positions of the ids, so Lq must be <= Lk; "
                f"got Lq={q_len}, Lk={kv_len}"
            )

    def allowed(self, rows, cols, q_len, kv_len):
        ids = self.ids.to(cols.device)
        q_ids = ids[:, rows + _bottom_right_offset(q_len, kv_len)]
        k_ids = ids[:, cols]
        return (q_ids[:, :, None] == k_ids[:, None, :])[:, None]

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        ids = self.ids.cpu()
        q_min, q_max = _tile_min_max(ids[:, kv_len - q_len :], q_tile)
        k_min, k_max = _tile_min_max(ids, k_tile)
        q_min, q_max = q_min[:, :, None], q_max[:, :, None]
        k_min, k_max = k_min[:, None, :], k_max[:, None, :]
        # One id on both sides: every pair matches. Disjoint id ranges: no pair can match.
        full = (q_min == q_max) & (k_min == k_max) & (q_min == k_min)
        empty = (q_max < k_min) | (k_max < q_min)
        return _kinds(full, empty)[:, None]

    def __repr__(self):
        return f"document(ids of shape {tuple(self.ids.shape)})"


def _tile_min_max(ids: Tensor, tile: int) -> tuple[Tensor, Tensor]:
    """Per-tile minimum and maximum of ``ids (B, L)`` along L: ``(B, ceil(L/tile))`` each."""
    pad = -ids.shape[-1] % tile
    if pad:  # repeat the last id: it changes no tile's minimum or maximum
        ids = torch.cat([ids, ids[:, -1:].expand(-1, pad)], dim=-1)
    tiles = ids.view(ids.shape[0], -1, tile)
    return tiles.amin(-1), tiles.amax(-1)


# ---------------------------------------------------------------------------------------------
# Any boolean tensor
# ---------------------------------------------------------------------------------------------


class Dense(Mask):
    """Any pattern, given as a boolean tensor broadcastable to ``(B, H, Lq, Lk)``.
    ``True`` = may attend (the opposite of ``torch.nn.MultiheadAttention``'s ``key_padding_mask``,
    where ``True`` means *ignore*)."""

    def __init__(self, allowed: Tensor):
        if not isinstance(allowed, Tensor):
            raise TypeError(
                f"dense: expected a boolean tensor (True = may attend), "
                f"got {type(allowed).__name__}"
            )
        if allowed.dtype != torch.bool:
            raise TypeError(
                f"dense: expected a boolean tensor where True means 'may attend', got dtype "
                f"{allowed.dtype}; for an additive float bias use a score_mod instead"
            )
        if allowed.dim() > 4:
            raise ValueError(
                f"dense: the mask must broadcast to (B, H, Lq, Lk), got {allowed.dim()} "
                f"dimensions (shape {tuple(allowed.shape)})"
            )
        self.tensor = allowed.reshape((1,) * (4 - allowed.dim()) + tuple(allowed.shape))

    def batch_heads(self):
        return self.tensor.shape[0], self.tensor.shape[1]

    def validate(self, batch, heads, q_len, kv_len):
        super().validate(batch, heads, q_len, kv_len)
        rows, cols = self.tensor.shape[-2:]
        if rows not in (1, q_len) or cols not in (1, kv_len):
            raise ValueError(
                f"mask: a dense mask of shape {tuple(self.tensor.shape)} cannot broadcast to "
                f"(B={batch}, H={heads}, Lq={q_len}, Lk={kv_len}); its last two dimensions must "
                f"be (Lq or 1, Lk or 1)"
            )

    def allowed(self, rows, cols, q_len, kv_len):
        t = self.tensor.to(cols.device)
        t = t[:, :, rows] if t.shape[-2] > 1 else t.expand(-1, -1, rows.numel(), -1)
        t = t[:, :, :, cols] if t.shape[-1] > 1 else t.expand(-1, -1, -1, cols.numel())
        return t

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        t = self.tensor
        n_q, n_k = -(-q_len // q_tile), -(-kv_len // k_tile)
        # A broadcast (size-1) axis has the same kind on every tile along it.
        q_step = q_tile if t.shape[-2] > 1 else 1
        k_step = k_tile if t.shape[-1] > 1 else 1
        pad = (0, -t.shape[-1] % k_step, 0, -t.shape[-2] % q_step)

        def reduce_tiles(padding_value: bool, reduce) -> Tensor:
            padded = torch.nn.functional.pad(t, pad, value=padding_value)
            tiles = padded.reshape(
                *t.shape[:2], padded.shape[-2] // q_step, q_step, padded.shape[-1] // k_step, k_step
            )
            return reduce(reduce(tiles, 5), 3).cpu()

        full = reduce_tiles(True, torch.all)
        empty = ~reduce_tiles(False, torch.any)
        return _kinds(full, empty).expand(-1, -1, n_q, n_k)

    def __repr__(self):
        return f"dense(shape {tuple(self.tensor.shape)})"


# ---------------------------------------------------------------------------------------------
# Algebra
# ---------------------------------------------------------------------------------------------


def _broadcast_sizes(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return max(a[0], b[0]), max(a[1], b[1])


class And(Mask):
    """Both masks allow. ``True`` = may attend."""

    def __init__(self, left: Mask, right: Mask):
        self.left, self.right = left, right
        self.shift_invariant = left.shift_invariant and right.shift_invariant

    def batch_heads(self):
        return _broadcast_sizes(self.left.batch_heads(), self.right.batch_heads())

    def validate(self, batch, heads, q_len, kv_len):
        self.left.validate(batch, heads, q_len, kv_len)
        self.right.validate(batch, heads, q_len, kv_len)

    def allowed(self, rows, cols, q_len, kv_len):
        return self.left.allowed(rows, cols, q_len, kv_len) & self.right.allowed(
            rows, cols, q_len, kv_len
        )

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return torch.minimum(
            self.left.tile_kinds(q_len, kv_len, q_tile, k_tile),
            self.right.tile_kinds(q_len, kv_len, q_tile, k_tile),
        )

    def __repr__(self):
        return f"({self.left!r} & {self.right!r})"


class Or(And):
    """Either mask allows. ``True`` = may attend."""

    def allowed(self, rows, cols, q_len, kv_len):
        return self.left.allowed(rows, cols, q_len, kv_len) | self.right.allowed(
            rows, cols, q_len, kv_len
        )

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return torch.maximum(
            self.left.tile_kinds(q_len, kv_len, q_tile, k_tile),
            self.right.tile_kinds(q_len, kv_len, q_tile, k_tile),
        )

    def __repr__(self):
        return f"({self.left!r} | {self.right!r})"


class Not(Mask):
    """Allows exactly what the inner mask forbids. ``True`` = may attend."""

    def __init__(self, inner: Mask):
        self.inner = inner
        self.shift_invariant = inner.shift_invariant

    def batch_heads(self):
        return self.inner.batch_heads()

    def validate(self, batch, heads, q_len, kv_len):
        self.inner.validate(batch, heads, q_len, kv_len)

    def allowed(self, rows, cols, q_len, kv_len):
        return ~self.inner.allowed(rows, cols, q_len, kv_len)

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        return FULL - self.inner.tile_kinds(q_len, kv_len, q_tile, k_tile)

    def __repr__(self):
        return f"~{self.inner!r}"


def _kinds(full: Tensor, empty: Tensor) -> Tensor:
    """Encode two (broadcastable) boolean tile maps as EMPTY=0 / PARTIAL=1 / FULL=2 (int8).
    A tile is never both full and empty, so ``1 + full - empty`` is exact."""
    return PARTIAL + full.to(torch.int8) - empty.to(torch.int8)


# ---------------------------------------------------------------------------------------------
# Public constructors
# ---------------------------------------------------------------------------------------------


def causal() -> Mask:
    """Causal mask: query ``i`` (absolute position, bottom-right aligned) may attend to keys
    ``0 .. i``. ``True`` = may attend."""
    return Causal()


def sliding_window(size: int) -> Mask:
    """Causal local window: query ``i`` may attend to keys ``i-size+1 .. i``.
    ``True`` = may attend."""
    return SlidingWindow(size)


def key_padding(lengths, side: str = "right") -> Mask:
    """Padding mask from per-row lengths ``(B,)``: only real keys may be attended to
    (``side="right"``: the first ``lengths[b]``; ``"left"``: the last). ``True`` = may attend."""
    return KeyPadding(lengths, side)


def document(ids) -> Mask:
    """Packed documents: attend only within the same id; ``ids`` is ``(Lk,)`` or ``(B, Lk)``.
    ``True`` = may attend."""
    return Document(ids)


def prefix_lm(prefix_len) -> Mask:
    """Prefix-LM: bidirectional over the first ``prefix_len`` keys, causal after them.
    ``True`` = may attend."""
    return PrefixLM(prefix_len)


def from_attention_mask(attention_mask: Tensor | None) -> Mask | None:
    """The key mask of a padded batch from a Hugging Face style ``attention_mask (B, Lk)``
    (1 = real token, 0 = padding): ``key_padding`` when each row's padding is on one side (so
    tiles can skip it), ``dense`` otherwise, ``None`` when nothing is padded.
    ``True`` = may attend."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask: expected shape (B, L) with 1 for real tokens and 0 for padding, got "
            f"{tuple(attention_mask.shape)}"
        )
    real = attention_mask.bool()
    if bool(real.all()):
        return None
    lengths = real.sum(-1)
    keys = torch.arange(real.shape[1], device=real.device)
    if bool((real == (keys < lengths[:, None])).all()):
        return key_padding(lengths.cpu())
    if bool((real == (keys >= real.shape[1] - lengths[:, None])).all()):
        return key_padding(lengths.cpu(), side="left")
    return dense(real[:, None, None, :])


def dense(allowed: Tensor) -> Mask:
    """Any boolean tensor broadcastable to ``(B, H, Lq, Lk)``. ``True`` = may attend."""
    return Dense(allowed)


__all__ = [
    "EMPTY",
    "PARTIAL",
    "FULL",
    "Mask",
    "as_mask",
    "causal",
    "sliding_window",
    "key_padding",
    "document",
    "prefix_lm",
    "dense",
    "from_attention_mask",
]
