"""Key/value caches for decoding: compute each token's keys and values once.

A ``Cache`` holds a whole model's decoding state for one batch, in buffers allocated once:

- ``layers``: one ``KVCache`` per self-attention layer, keys ``(B, Hkv, C, D)`` and values;
- ``cross``: one ``MemoryCache`` per cross-attention layer (the encoder memory's keys and
  values, computed on the first step);
- ``key_mask (B, C)``: True where a slot holds a real token (False: left padding, or not
  written yet);
- ``next_position (B,)``: the position the next real token of each row gets;
- ``cursor (1,)``: the next free slot, on the device (gpt-fast's ``input_pos``).

The model's own forward runs the prompt (prefill) and each new token (decode step) over it:
``advance`` registers the new tokens and says where their keys go (a ``Write``), and each layer
writes its keys there and attends to what the ``Write`` names. Two ways to attend:

- ``whole=False`` (eager): to the slots filled so far, a view whose length changes every step
  (an early step does not read the empty rest: 12 layers x 1024 slots cost 1.8 ms a step);
- ``whole=True``: a call of one token per row attends to the whole buffer, with the unwritten
  slots masked. Every step then has the same shapes and reads no value back to the host, so
  ``torch.compile`` makes one graph of it and a CUDA graph can replay it. Longer calls (the
  prompt) attend to the filled part, as eagerly.

Caches are for inference (``torch.no_grad``): they are written in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.attention import masks
from atenea.nn.positions import positions_from_mask


@dataclass(frozen=True)
class Write:
    """Where one forward's new keys and values go, and what it attends to.

    ``slots``: a slice of the slots (eager) or a ``(1,)`` slot index on the device (whole);
    ``end``: attend to slots ``0 .. end-1``, or ``None`` for the whole buffer."""

    slots: slice | Tensor
    end: int | None


class KVCache:
    """Keys ``(B, Hkv, capacity, D)`` and values ``(B, Hkv, capacity, Dv)`` of one layer."""

    def __init__(self, batch, kv_heads, capacity, head_dim, value_dim, dtype, device):
        self.keys = torch.zeros(batch, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros(batch, kv_heads, capacity, value_dim, dtype=dtype, device=device)

    def update(self, keys: Tensor, values: Tensor, write: Write) -> tuple[Tensor, Tensor]:
        """Store ``keys (B, Hkv, L, D)`` / ``values`` at ``write.slots``; return the keys and
        values to attend to, ``(B, Hkv, end or capacity, D)`` views of the buffers."""
        self.keys[:, :, write.slots] = keys
        self.values[:, :, write.slots] = values
        return self.keys[:, :, : write.end], self.values[:, :, : write.end]

    def select(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), e.g. to follow the surviving beams."""
        self.keys = _rows(self.keys, rows)
        self.values = _rows(self.values, rows)


def _rows(buffer: Tensor, rows: Tensor) -> Tensor:
    """``buffer[rows]``, written into ``buffer`` itself when the batch keeps its size: a CUDA
    graph replays on fixed addresses, so a beam step must not move the cache."""
    picked = buffer.index_select(0, rows)
    if picked.shape == buffer.shape:
        return buffer.copy_(picked)
    return picked


class MemoryCache:
    """The keys and values a cross-attention layer computes from the encoder memory: the
    memory does not change while the decoder writes, so they are computed once."""

    def __init__(self):
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def select(self, rows: Tensor) -> None:
        if self.keys is not None:
            self.keys = self.keys.index_select(0, rows)
            self.values = self.values.index_select(0, rows)


def steps_of_fixed_shape(blocks) -> bool:
    """Can one-token steps through these blocks attend to the whole buffer (``whole=True``)?
    Not when a score modifier sees positions: the step's query would sit at the buffer's end,
    and ALiBi or a relative bias would read the wrong distances."""
    return all(block.attention.score_mod is None for block in blocks)


class Cache:
    """Decoding state of a model for one batch (see the module docstring)."""

    @classmethod
    def for_blocks(
        cls, blocks, batch: int, capacity: int, dtype, device, whole: bool = False
    ) -> Cache:
        """An empty cache for a stack of ``TransformerBlock`` s, sized from their attention
        modules: a ``KVCache`` of ``capacity`` slots per block, and a ``MemoryCache`` per block
        with cross-attention."""
        layers = [
            KVCache(batch, b.attention.num_kv_heads, capacity, b.attention.head_dim,
                    b.attention.head_dim, dtype, device)
            for b in blocks
        ]  # fmt: skip
        cross = [MemoryCache() for b in blocks if b.cross_attention is not None]
        return cls(layers, cross, whole=whole)

    def __init__(
        self, layers: list[KVCache], cross: list[MemoryCache] | None = None, whole: bool = False
    ):
        self.layers, self.cross, self.whole = layers, cross or [], whole
        batch, _, capacity, _ = layers[0].keys.shape
        device = layers[0].keys.device
        self.key_mask = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch, dtype=torch.long, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)
        if whole and device.type == "cuda":
            # A CUDA graph of the step reads and writes these in place: tell torch.compile their
            # addresses never change, so a replay neither copies them nor is re-recorded.
            for buffer in self.buffers():
                torch._dynamo.mark_static_address(buffer)

    def buffers(self) -> list[Tensor]:
        """Every tensor the cache writes in place (keys, values, masks, positions, cursor)."""
        kv = [t for layer in self.layers for t in (layer.keys, layer.values)]
        return [*kv, self.key_mask, self.next_position, self.cursor]

    @property
    def capacity(self) -> int:
        return self.key_mask.shape[1]

    @property
    def length(self) -> int:
        """Slots written so far (reads the device cursor)."""
        return int(self.cursor)

    def advance(self, attention_mask: Tensor) -> tuple[Tensor, masks.Mask | None, Write]:
        """Register ``L`` new tokens per row (``attention_mask (B, L)``, 1 = real token).

        Returns their positions ``(B, L)``, the mask of the attention over the cache (causal
        over the filled slots and blind to padding, True = may attend; None when nothing is
        masked) and the ``Write`` every layer uses."""
        if attention_mask.dim() != 2:
            raise ValueError(
                f"cache: the new tokens' mask must be (B, L), got {tuple(attention_mask.shape)}"
            )
        rows, count = attention_mask.shape
        if rows != self.key_mask.shape[0]:
            raise ValueError(
                f"cache: made for a batch of {self.key_mask.shape[0]} rows, the input has {rows}; "
                f"make one with new_cache({rows}, capacity)"
            )
        real = attention_mask.bool()
        if self.whole and count == 1:
            # Compiled, a step reads nothing back to the host (generation sizes the cache);
            # eagerly, one step past the end is said as for any other call.
            if not torch.compiler.is_compiling():
                self._check_room(int(self.cursor), count)
            # A copy: the cursor moves on below, the layers must write where it was.
            write = Write(self.cursor.clone(), None)
        else:
            start = int(self.cursor)
            self._check_room(start, count)
            write = Write(slice(start, start + count), start + count)
        self.key_mask[:, write.slots] = real
        positions = positions_from_mask(real, self.next_position)  # padding: 0 (masked)
        self.next_position += real.long().sum(-1)
        self.cursor += count
        return positions, self._mask(count, write), write

    def _check_room(self, start: int, count: int) -> None:
        if start + count > self.capacity:
            raise ValueError(
                f"cache: {start + count} positions needed but the cache holds "
                f"{self.capacity}; create it with a larger capacity"
            )

    def _mask(self, count: int, write: Write) -> masks.Mask | None:
        key_mask = self.key_mask[:, : write.end]
        if write.end is None:
            # The unwritten slots are False: with one query per row that is all the rule, and
            # a dense mask reads nothing back to the host.
            return masks.dense(key_mask[:, None, None, :])
        padding = masks.from_attention_mask(key_mask)
        if count == 1:  # one query at the last filled slot: causal allows every key
            return padding
        return masks.causal() if padding is None else masks.causal() & padding

    def select(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` (beam search reorders its beams every step)."""
        for layer in [*self.layers, *self.cross]:
            layer.select(rows)
        self.key_mask = _rows(self.key_mask, rows)
        self.next_position = _rows(self.next_position, rows)
