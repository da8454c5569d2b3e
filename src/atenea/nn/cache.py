"""Key/value caches for decoding: compute each token's keys and values once.

``KVCache`` holds one attention layer's keys and values in preallocated buffers. ``Cache``
holds a whole model's: one ``KVCache`` per layer (and per cross-attention layer), which key
positions are real tokens (left padding), and each batch row's next position, so a left-padded
batch decodes with the right positions and masks. Caches are for inference (``torch.no_grad``):
they are written in place.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Keys ``(B, Hkv, capacity, D)`` and values ``(B, Hkv, capacity, Dv)`` of one layer; the
    first ``length`` positions are filled (the same count for every row)."""

    def __init__(self, batch, kv_heads, capacity, head_dim, value_dim, dtype, device):
        self.keys = torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros(batch, kv_heads, capacity, value_dim, dtype=dtype, device=device)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``keys (B, Hkv, L, D)`` / ``values`` after the filled part and return views of
        everything filled so far ``(B, Hkv, length, D)``."""
        end = self.length + keys.shape[2]
        if end > self.capacity:
            raise ValueError(
                f"cache: {end} positions needed but the cache holds {self.capacity}; create it "
                f"with a larger capacity"
            )
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.filled()

    def filled(self) -> tuple[Tensor, Tensor]:
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]

    def select(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), e.g. to follow the surviving beams."""
        self.keys = self.keys.index_select(0, rows)
        self.values = self.values.index_select(0, rows)


class Cache:
    """Decoding state of a model for one batch.

    - ``layers``: one ``KVCache`` per self-attention layer;
    - ``cross``: one ``KVCache`` per cross-attention layer (filled once from the encoder memory);
    - ``key_mask (B, capacity)``: True where a position holds a real token (False: padding);
    - ``next_position (B,)``: the position the next real token of each row will get.
    """

    def __init__(self, layers: list[KVCache], cross: list[KVCache] | None = None):
        self.layers = layers
        self.cross = cross or []
        batch, capacity = layers[0].keys.shape[0], layers[0].capacity
        device = layers[0].keys.device
        self.key_mask = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch, dtype=torch.long, device=device)

    @property
    def length(self) -> int:
        return self.layers[0].length

    def advance(self, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Register ``L`` new tokens (``attention_mask (B, L)``, 1 = real token) and return their
        positions ``(B, L)`` and the key mask ``(B, length + L)`` the attention must use."""
        start, count = self.length, attention_mask.shape[1]
        if start + count > self.key_mask.shape[1]:
            raise ValueError(
                f"cache: {start + count} positions needed but the cache holds "
                f"{self.key_mask.shape[1]}; create it with a larger capacity"
            )
        real = attention_mask.bool()
        self.key_mask[:, start : start + count] = real
        positions = (self.next_position.unsqueeze(1) + real.long().cumsum(-1) - 1).clamp(min=0)
        positions = positions * real  # padding: position 0 (masked anyway)
        self.next_position = self.next_position + real.long().sum(-1)
        return positions, self.key_mask[:, : start + count]

    def advance_one(self) -> int:
        """Register one new real token in every row (a decode step writing its keys and values
        itself, at the returned slot) and return that slot. Positions, the key mask and every
        layer's length move on by one."""
        slot = self.length
        if slot >= self.key_mask.shape[1]:
            raise ValueError(f"cache: full at {slot} positions; create it with a larger capacity")
        self.key_mask[:, slot] = True
        self.next_position = self.next_position + 1
        for layer in self.layers:
            layer.length = slot + 1
        return slot

    def select(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` (beam search reorders its beams every step)."""
        for layer in [*self.layers, *self.cross]:
            layer.select(rows)
        self.key_mask = self.key_mask.index_select(0, rows)
        self.next_position = self.next_position.index_select(0, rows)
