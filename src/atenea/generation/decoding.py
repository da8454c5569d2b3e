"""What the search loops drive: a model and its decoding state for one ``generate`` call.

A ``Decoding`` has ``first()`` (the prefill: logits ``(B, V)`` for the first new token),
``step(tokens (B,))`` (logits for the next one) and ``select(rows)`` (beam search keeps and
reorders rows). ``Recompute`` is the same without a cache -- every step runs the whole sequence
again -- the slow reference the cache must match.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.generation.steps import (
    decode_step,
    model_static_step,
    model_step,
    prefill,
    seq2seq_step,
    static_step,
)
from atenea.models.decoder import DecoderModel

_compiled_step = None


def compiled_step(model, *tensors) -> Tensor:
    """``DecoderModel.step`` through ``torch.compile`` (compiled on the first call, again for
    new shapes or models), with ``freezing``: the weights are folded into the graph as
    constants, prepacked for the CPU's matrix kernels. The inductor reads that setting when it
    compiles, inside a call. A model whose weights change afterwards needs
    ``torch._dynamo.reset()``."""
    global _compiled_step
    if _compiled_step is None:
        _compiled_step = torch.compile(model_static_step, fullgraph=True)
    with torch._inductor.config.patch(freezing=True):
        return _compiled_step(model, *tensors)


class CachedDecoder:
    """A decoder-only model and its KV cache. Decode steps run ``DecoderModel.step`` (compiled
    or not) when it covers the model, else the model's forward."""

    def __init__(self, model: DecoderModel, input_ids, attention_mask, max_new_tokens: int,
                 compile: bool = False):  # fmt: skip
        self.model, self.input_ids, self.attention_mask = model, input_ids, attention_mask
        batch, length = input_ids.shape
        self.cache = model.new_cache(batch, length + max_new_tokens, device=input_ids.device)
        self.static_step = None
        if static_step(model):
            self.static_step = compiled_step if compile else model_static_step
        self.whole_cache = compile  # a compiled step sees the same shapes at every step

    def first(self) -> Tensor:
        return prefill(self.model, self.input_ids, self.attention_mask, self.cache)

    def step(self, tokens: Tensor) -> Tensor:
        if self.static_step is None:
            return model_step(self.model, tokens, self.cache)
        return decode_step(
            self.model, tokens, self.cache, self.static_step, whole_cache=self.whole_cache
        )

    def select(self, rows: Tensor) -> None:
        self.cache.select(rows)


class CachedSeq2Seq:
    """An encoder-decoder model: the encoder's memory (computed once), and the decoder's self-
    and cross-attention cache. Decoding starts from ``config.bos_token_id``."""

    def __init__(self, model, input_ids, attention_mask, max_new_tokens: int):
        self.model, self.memory_mask = model, attention_mask
        self.memory = model.encode(input_ids, attention_mask)
        batch, source_length = input_ids.shape
        self.cache = model.new_cache(
            batch, 1 + max_new_tokens, source_length, device=input_ids.device
        )

    def first(self) -> Tensor:
        start = start_tokens(self.model, self.memory.shape[0], self.memory.device)
        return seq2seq_step(self.model, start, self.memory, self.memory_mask, self.cache)

    def step(self, tokens: Tensor) -> Tensor:
        return seq2seq_step(self.model, tokens[:, None], self.memory, self.memory_mask, self.cache)

    def select(self, rows: Tensor) -> None:
        self.cache.select(rows)
        # The cross-attention keys are cached; the memory is only checked for presence, but
        # its rows must still match the batch.
        self.memory = self.memory.index_select(0, rows)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, rows)


class Recompute:
    """No cache: every step runs the model on the whole sequence so far."""

    def __init__(self, model, input_ids, attention_mask):
        self.model = model
        self.seq2seq = not isinstance(model, DecoderModel)
        if self.seq2seq:
            self.memory_mask = attention_mask
            self.memory = model.encode(input_ids, attention_mask)
            input_ids = start_tokens(model, input_ids.shape[0], input_ids.device)
            attention_mask = None
        self.sequences = input_ids
        self.mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)

    def _logits(self) -> Tensor:
        if self.seq2seq:
            logits, _ = self.model.decode(self.sequences, self.memory, self.memory_mask)
            return logits[:, -1]
        return self.model(self.sequences, self.mask, logits_to_keep=1).logits[:, -1]

    def first(self) -> Tensor:
        return self._logits()

    def step(self, tokens: Tensor) -> Tensor:
        self.sequences = torch.cat([self.sequences, tokens[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(tokens)[:, None]], dim=1)
        return self._logits()

    def select(self, rows: Tensor) -> None:
        self.sequences, self.mask = self.sequences[rows], self.mask[rows]
        if self.seq2seq:
            self.memory = self.memory[rows]
            if self.memory_mask is not None:
                self.memory_mask = self.memory_mask[rows]


def start_tokens(model, batch: int, device) -> Tensor:
    """The decoder's first input for an encoder-decoder model: ``bos_token_id`` ``(B, 1)``."""
    return torch.full((batch, 1), model.config.bos_token_id, dtype=torch.long, device=device)


def start(model, input_ids, attention_mask, max_new_tokens: int, use_cache: bool, compile: bool):
    """The ``Decoding`` for this model, and the sequences the output begins with ``(B, L0)``
    and their mask: the prompt itself (decoder), or a BOS column (encoder-decoder)."""
    seq2seq = not isinstance(model, DecoderModel)
    if not use_cache:
        decoding = Recompute(model, input_ids, attention_mask)
    elif seq2seq:
        decoding = CachedSeq2Seq(model, input_ids, attention_mask, max_new_tokens)
    else:
        decoding = CachedDecoder(model, input_ids, attention_mask, max_new_tokens, compile)
    if seq2seq:
        begin = start_tokens(model, input_ids.shape[0], input_ids.device)
        return decoding, begin, torch.ones_like(begin, dtype=torch.bool)
    if attention_mask is None:
        return decoding, input_ids, torch.ones_like(input_ids, dtype=torch.bool)
    return decoding, input_ids, attention_mask.bool()
