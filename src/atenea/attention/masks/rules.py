"""Masks given by a rule on positions and lengths: causal, sliding window, key padding,
prefix-LM and packed documents. Each says which pairs may attend (``True``) and classifies tiles
without building the ``Lq x Lk`` matrix."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from atenea.attention.masks.base import (
    Mask,
    _bottom_right_offset,
    _kinds,
    _tile_bounds,
)
from atenea.attention.transfer import to_device


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
        low, high = torch.stack(self.values.aminmax()).tolist()  # one read, on a GPU too
        upper = kv_len if self.bounded_by_keys else float("inf")
        if low < 0 or high > upper:
            expected = f"[0, Lk={kv_len}]" if self.bounded_by_keys else "[0, inf)"
            raise ValueError(
                f"{self._owner}: {self.argument} must be in {expected}, got values from "
                f"{low} to {high}"
            )

    def _shown(self) -> str:
        """The values as a repr shows them; on a GPU their shape (reading them would wait)."""
        if self.values.device.type != "cpu":
            return f"{self.argument} on {self.values.device}, shape {tuple(self.values.shape)}"
        return str(self.values.tolist() if self._per_batch else int(self.values))

    def _column(self, device) -> Tensor:
        """Values shaped ``(Bm, 1, 1, 1)`` to broadcast against ``(B, H, Lq, Lk)``."""
        return to_device(self.values, device).view(-1, 1, 1, 1)


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
        k_lo, k_hi = _tile_bounds(kv_len, k_tile, device=self.values.device)
        lengths = self.values.view(-1, 1)
        if self.side == "right":
            full, empty = k_hi < lengths, k_lo >= lengths
        else:
            first_real = kv_len - lengths
            full, empty = k_lo >= first_real, k_hi < first_real
        n_q = -(-q_len // q_tile)
        return _kinds(full, empty)[:, None, None, :].expand(-1, 1, n_q, -1)

    def __repr__(self):
        values = self._shown()
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
        device = self.values.device
        q_lo, q_hi = _tile_bounds(q_len, q_tile, _bottom_right_offset(q_len, kv_len), device)
        k_lo, k_hi = _tile_bounds(kv_len, k_tile, device=device)
        prefix = self.values.view(-1, 1, 1)
        q_lo, q_hi, k_lo, k_hi = q_lo[:, None], q_hi[:, None], k_lo[None, :], k_hi[None, :]
        full = (k_hi < prefix) | (k_hi <= q_lo)
        empty = (k_lo >= prefix) & (k_lo > q_hi)
        return _kinds(full, empty)[:, None]

    def __repr__(self):
        values = self._shown()
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
        ids = to_device(self.ids, cols.device)
        q_ids = ids[:, rows + _bottom_right_offset(q_len, kv_len)]
        k_ids = ids[:, cols]
        return (q_ids[:, :, None] == k_ids[:, None, :])[:, None]

    def tile_kinds(self, q_len, kv_len, q_tile, k_tile):
        ids = self.ids  # on its device: a GPU's ids are never read back
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
