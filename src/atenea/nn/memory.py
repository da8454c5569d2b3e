"""Segment memory (Transformer-XL, Dai et al. 2019) and its compressed variant (Compressive
Transformer, Rae et al. 2020): context beyond the segment a model runs on.

A long text is cut into segments of ``L`` tokens that run one after another. Each layer keeps
the keys and values of the last ``M`` positions it saw, detached from the graph (no gradient
flows into the past), and the next segment attends to

    [ compressed (C slots) | memory (M slots) | its own L tokens ]     keys (B, Hkv, C+M+L, D)

With a compression rate ``r``, the slots pushed out of the memory are not dropped: every ``r``
of them are averaged into one slot of a coarser memory of ``C`` slots.

``SegmentMemory`` speaks the ``Cache`` protocol of ``nn/cache.py``: ``advance`` registers the
new tokens and returns their positions, the mask over the keys and a ``Write``; ``layers[i]``
is what layer ``i``'s attention calls ``update(keys, values, write)`` on. So the model's own
forward runs it, exactly as it runs a KV cache. Unlike a KV cache it is differentiable in
the current segment (training), and it forgets: what is older than ``M`` (or ``C * r``) goes.

Positions keep counting across segments. RoPE carries the relative distance because keys are
stored already rotated at their own positions; ALiBi (``scores.alibi``) because it reads the
distance of the key slots, and the memory's slots are the tokens just before the segment, in
order (a compressed slot counts as one step further, as the Compressive Transformer's relative
encodings count it). Documents: every token carries a document id; a
token attends only to keys of its own document, and positions restart at each document's
first token, so a document boundary resets the memory for that row, mid-segment or not.

Where things live: the keys/values on the model's device; the bookkeeping (the document of every
slot, each row's next position and last document: a few longs a row) on the host, so that
``advance`` decides positions and masks without reading a value back from the device. On a GPU
every read waits for all the work queued before it (the GPU idles while the host queues the
next segment); the host's answers go to the device as copies the host does not wait for.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.attention import masks
from atenea.attention.transfer import to_device
from atenea.nn.cache import Write
from atenea.nn.positions import positions_in_documents

# Document id of a slot that holds nothing (never equal to a real id, which is >= 0).
EMPTY_SLOT = -1
# Where the bookkeeping lives, whatever the device of the keys/values (the module docstring).
HOST = torch.device("cpu")


class LayerMemory:
    """One layer's memory: ``keys (B, Hkv, M', D)``, ``values (B, Hkv, M', Dv)`` with
    ``M' <= memory_len`` (and the compressed slots before them, ``C' <= compressed_len``)."""

    def __init__(self, owner: SegmentMemory):
        self.owner = owner
        self.keys: Tensor | None = None
        self.values: Tensor | None = None
        self.compressed_keys: Tensor | None = None
        self.compressed_values: Tensor | None = None

    def update(self, keys: Tensor, values: Tensor, write: Write) -> tuple[Tensor, Tensor]:
        """Return the keys/values to attend to, ``(B, Hkv, C'+M'+L, D)``: compressed slots,
        memory, then this segment's ``keys (B, Hkv, L, D)``. Keep the newest ``memory_len``
        (detached) for the next segment, and pool what falls out when compressing."""
        past_keys = [t for t in (self.compressed_keys, self.keys) if t is not None]
        past_values = [t for t in (self.compressed_values, self.values) if t is not None]
        all_keys = torch.cat([*past_keys, keys], dim=2)
        all_values = torch.cat([*past_values, values], dim=2)

        # The slots in time order without the compressed ones (memory then segment): a view
        # of the tensors just built, not a second copy of the past.
        compressed = 0 if self.compressed_keys is None else self.compressed_keys.shape[2]
        recent_keys = all_keys[:, :, compressed:].detach()
        recent_values = all_values[:, :, compressed:].detach()
        kept = self.owner.memory_len
        evicted = max(recent_keys.shape[2] - kept, 0)
        self.keys, self.values = recent_keys[:, :, evicted:], recent_values[:, :, evicted:]
        if self.owner.compressed_len and evicted > 0:
            rate = self.owner.compression_rate
            pooled_keys = pool(recent_keys[:, :, :evicted], rate)
            pooled_values = pool(recent_values[:, :, :evicted], rate)
            if self.compressed_keys is not None:
                pooled_keys = torch.cat([self.compressed_keys, pooled_keys], dim=2)
                pooled_values = torch.cat([self.compressed_values, pooled_values], dim=2)
            keep = self.owner.compressed_len
            self.compressed_keys, self.compressed_values = (
                pooled_keys[:, :, -keep:],
                pooled_values[:, :, -keep:],
            )
        return all_keys, all_values


def pool(slots: Tensor, rate: int) -> Tensor:
    """Average every ``rate`` consecutive slots: ``(B, H, N, D)`` -> ``(B, H, ceil(N/rate), D)``
    (a last, shorter group is averaged over what it has)."""
    count = slots.shape[2]
    groups = -(-count // rate)
    padded = torch.nn.functional.pad(slots, (0, 0, 0, groups * rate - count))
    sums = padded.unflatten(2, (groups, rate)).sum(3)
    sizes = torch.full((groups,), rate, dtype=slots.dtype, device=slots.device)
    sizes[-1] = count - (groups - 1) * rate
    return sums / sizes[:, None]


def pool_documents(documents: Tensor, rate: int) -> Tensor:
    """The document of each pooled slot ``(B, N)`` -> ``(B, ceil(N/rate))``: the group's document
    when all its slots share it, ``EMPTY_SLOT`` when the group mixes documents (a pooled slot
    must not leak one document into the next)."""
    count = documents.shape[1]
    groups = -(-count // rate)
    padded = torch.nn.functional.pad(documents, (0, groups * rate - count), value=EMPTY_SLOT)
    padded[:, count:] = padded[:, (groups - 1) * rate : (groups - 1) * rate + 1]
    grouped = padded.unflatten(1, (groups, rate))
    uniform = (grouped == grouped[..., :1]).all(-1)
    return torch.where(uniform, grouped[..., 0], torch.full_like(grouped[..., 0], EMPTY_SLOT))


class SegmentMemory:
    """The memory of a whole decoder for ``batch`` parallel streams of text (see the module
    docstring). Make it with ``DecoderModel.new_memory``; pass it as ``memory=`` to each
    segment's forward, in order, with ``document_ids`` on the host (ids on a device are copied
    back, which is a read from it). ``device``: the keys/values', where ``load_state`` puts
    them; the bookkeeping is on the host whatever it is."""

    def __init__(
        self, num_layers: int, batch: int, memory_len: int, compressed_len: int = 0,
        compression_rate: int = 1, device=None,
    ):  # fmt: skip
        if memory_len < 0 or compressed_len < 0:
            raise ValueError(
                f"memory: memory_len and compressed_len must be >= 0, got {memory_len}, "
                f"{compressed_len}"
            )
        if compressed_len and compression_rate < 1:
            raise ValueError(f"memory: compression_rate must be >= 1, got {compression_rate}")
        self.memory_len, self.compressed_len = memory_len, compressed_len
        self.compression_rate = compression_rate
        self.layers = [LayerMemory(self) for _ in range(num_layers)]
        self.cross: list = []  # the Cache protocol: no cross-attention in a decoder
        self.batch, self.device = batch, device
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new batch of documents)."""
        for layer in self.layers:
            layer.keys = layer.values = None
            layer.compressed_keys = layer.compressed_values = None
        empty = torch.empty(self.batch, 0, dtype=torch.long, device=HOST)
        self.documents = empty  # (B, M') document id of every memory slot
        self.compressed_documents = empty.clone()  # (B, C')
        self.next_position = torch.zeros(self.batch, dtype=torch.long, device=HOST)  # (B,)
        self.last_document = torch.full_like(self.next_position, EMPTY_SLOT)  # (B,)
        # The last segment's answer: every key of every row was in the row's current document,
        # so its mask was causal alone (True of an empty memory).
        self.one_document = True

    def advance(
        self, input_ids: Tensor, document_ids: Tensor | None = None
    ) -> tuple[Tensor, masks.Mask, Write]:
        """Register the next segment ``input_ids (B, L)`` (``document_ids (B, L)``, >= 0: the
        document of every token; default: one document per row, continuing).

        Returns the positions ``(B, L)`` (counting on from the memory within a document, from 0
        at a document's first token) on ``input_ids``' device, the mask over ``(L, C'+M'+L)``
        keys (causal, bottom-right aligned, within the document; its ids on the host, where the
        backends' tile tables read them) and the ``Write`` the layers pass back to ``update``.

        Reads no value from the device: everything is decided on the host bookkeeping (and
        host ``document_ids``), and the positions go to the device as a copy the host does not
        wait for (``to_device``)."""
        batch, length = input_ids.shape
        if batch != self.batch:
            raise ValueError(f"memory: made for {self.batch} rows, got input_ids of {batch}")
        if document_ids is None:  # the rows go on with their last document
            document_ids = self.last_document.clamp(min=0)[:, None].expand(batch, length)
        else:
            if tuple(document_ids.shape) != (batch, length):
                raise _bad_documents(document_ids, batch, length)
            document_ids = document_ids.to(HOST)  # no copy when on the host already
            # A negative id would match the empty slots' -1 and attend to them.
            if bool((document_ids < 0).any()):
                raise _bad_documents(document_ids, batch, length)
        positions = positions_in_documents(document_ids, self.last_document, self.next_position)

        key_documents = torch.cat([self.compressed_documents, self.documents, document_ids], 1)
        past = key_documents.shape[1] - length
        # Causal with L queries over K keys is bottom-right aligned (query i at slot past + i);
        # when every key shares its query's document (most segments), that is the whole rule
        # and the attention skips the tiles above the diagonal. Otherwise the keys' document
        # ids are a document mask (the queries are the last L of them, as ``masks.document``
        # reads them; an empty slot's -1 matches no query): structured, no L x K tensor.
        # Which one is a question about host tensors, answered every segment: no read to save.
        mask = masks.causal()
        self.one_document = bool((key_documents == key_documents[:, -1:]).all())
        if not self.one_document:
            mask = mask & masks.document(key_documents)

        self._remember(document_ids, positions)
        write = Write(slice(past, past + length), None)
        return to_device(positions, input_ids.device), mask, write

    def _remember(self, document_ids: Tensor, positions: Tensor) -> None:
        """Move the bookkeeping on by one segment (the layers move their own keys/values):
        ``document_ids`` and ``positions (B, L)``, on the host."""
        recent = torch.cat([self.documents, document_ids], dim=1)
        evicted = recent.shape[1] - self.memory_len
        self.documents = recent[:, max(evicted, 0) :]
        if self.compressed_len and evicted > 0:
            pooled = pool_documents(recent[:, :evicted], self.compression_rate)
            pooled = torch.cat([self.compressed_documents, pooled], dim=1)
            self.compressed_documents = pooled[:, -self.compressed_len :]
        self.next_position = positions[:, -1] + 1
        self.last_document = document_ids[:, -1].clone()

    # -- saving (a training run that carries the memory from step to step checkpoints it) ------

    def state(self) -> dict[str, Tensor]:
        """Everything the memory holds, as named tensors: ``documents``, ``compressed_documents``,
        ``next_position``, ``last_document`` (int64, on the host) and ``layer.{i}.{keys|values|
        compressed_keys|compressed_values}`` (those not empty, on their device)."""
        tensors = {name: getattr(self, name) for name in BOOKKEEPING}
        for index, layer in enumerate(self.layers):
            for name in LAYER_TENSORS:
                if getattr(layer, name) is not None:
                    tensors[f"layer.{index}.{name}"] = getattr(layer, name)
        return tensors

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        """Take back what ``state`` gave, wherever its tensors are (a checkpoint may hold them
        on another device): the bookkeeping on the host, the keys/values on this memory's
        device. The same memory, exactly."""
        host = {name: tensors[name].to(HOST) for name in BOOKKEEPING}
        self.documents, self.compressed_documents = host["documents"], host["compressed_documents"]
        self.next_position, self.last_document = host["next_position"], host["last_document"]
        for index, layer in enumerate(self.layers):
            for name in LAYER_TENSORS:
                saved = tensors.get(f"layer.{index}.{name}")
                setattr(layer, name, None if saved is None else saved.to(self.device))
        self.one_document = False  # the last segment's answer is not saved: the next one gives it


BOOKKEEPING = ("documents", "compressed_documents", "next_position", "last_document")
LAYER_TENSORS = ("keys", "values", "compressed_keys", "compressed_values")


def _bad_documents(document_ids: Tensor, batch: int, length: int) -> ValueError:
    return ValueError(
        f"document_ids: expected non-negative ids of shape {(batch, length)}, got "
        f"{tuple(document_ids.shape)}"
    )
