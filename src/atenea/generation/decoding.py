"""What the search loops drive: a model and its decoding state for one ``generate`` call.

A ``Decoding`` has ``first()`` (the prefill: logits ``(B, V)`` for the first new token),
``step(tokens (B,))`` (logits for the next one) and ``select(rows)`` (beam search keeps and
reorders rows). ``Recompute`` is the same without a cache -- every step runs the whole sequence
again -- the slow reference the cache must match.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from atenea.generation.config import GenerationConfig
from atenea.models.decoder import DecoderModel
from atenea.nn.cache import steps_of_fixed_shape


def decode_step(model: DecoderModel, tokens: Tensor, cache) -> Tensor:
    """One new token per row ``(B,)`` through the model's own forward on its cache: the logits
    of the token after it ``(B, V)``. The hot loop of generation (gpt-fast's
    ``decode_one_token``)."""
    return model(tokens[:, None], cache=cache, logits_to_keep=1).logits[:, -1]


@functools.cache
def _compiled_decode_step(cuda_graphs: bool):
    # One compiled function for every call: torch.compile keeps its graphs (one per model and
    # shapes) on it, so a second ``generate`` reuses the first one's.
    mode = "reduce-overhead" if cuda_graphs else None
    return torch.compile(decode_step, fullgraph=True, mode=mode)


def compiled_decode_step(model: DecoderModel, tokens: Tensor, cache) -> Tensor:
    """``decode_step`` through ``torch.compile``, on a cache made with ``whole=True`` (the same
    shapes at every step).

    On a GPU the step is captured as a CUDA graph (``mode="reduce-overhead"``): a 12-layer
    step is ~150 kernel launches, and launching them one by one from Python costs more than
    running them. The cache's buffers have static addresses (``Cache``), so a replay reads and
    writes them in place. On the CPU, with ``freezing``: the weights are folded into the graph
    as constants, prepacked for the CPU's matrix kernels (the inductor reads that setting when
    it compiles, inside a call). A model whose weights change afterwards needs
    ``torch._dynamo.reset()``."""
    if tokens.device.type == "cuda":
        return _compiled_decode_step(True)(model, tokens, cache)
    with torch._inductor.config.patch(freezing=True):
        return _compiled_decode_step(False)(model, tokens, cache)


class CachedDecoder:
    """A decoder-only model and its KV cache: the prompt through the model's forward once (the
    prefill), then one token per step through the same forward (compiled or not)."""

    def __init__(self, model: DecoderModel, input_ids, attention_mask, max_new_tokens: int,
                 compile: bool = False):  # fmt: skip
        self.model, self.input_ids, self.attention_mask = model, input_ids, attention_mask
        # A compiled step attends to the whole cache (the same shapes at every step); a model
        # whose score modifier sees positions decodes eagerly on the filled part instead.
        self.compiled = compile and steps_of_fixed_shape(model.layers)
        batch, length = input_ids.shape
        self.cache = model.new_cache(
            batch, length + max_new_tokens, device=input_ids.device, whole=self.compiled
        )

    def first(self) -> Tensor:
        out = self.model(self.input_ids, self.attention_mask, cache=self.cache, logits_to_keep=1)
        return out.logits[:, -1]

    def step(self, tokens: Tensor) -> Tensor:
        step = compiled_decode_step if self.compiled else decode_step
        return step(self.model, tokens, self.cache)

    def select(self, rows: Tensor) -> None:
        self.cache.select(rows)


class CachedSeq2Seq:
    """An encoder-decoder model: the encoder's memory (computed once), and the decoder's self-
    and cross-attention cache. Decoding starts from ``config.bos_token_id``."""

    def __init__(self, model, input_ids, attention_mask, max_new_tokens: int):
        self.model, self.memory_mask = model, attention_mask
        self.memory = model.encode(input_ids, attention_mask)
        self.cache = model.new_cache(
            input_ids.shape[0], 1 + max_new_tokens, device=input_ids.device
        )

    def first(self) -> Tensor:
        return self.step(start_tokens(self.model, self.memory.shape[0], self.memory.device)[:, 0])

    def step(self, tokens: Tensor) -> Tensor:
        """Decoder tokens ``(B,)`` -> logits ``(B, V)``; the cross-attention keys and values of
        the memory are computed on the first step and kept in the cache."""
        logits, _ = self.model.decode(
            tokens[:, None], self.memory, self.memory_mask, cache=self.cache, logits_to_keep=1
        )
        return logits[:, -1]

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


def start(model, input_ids, attention_mask, s: GenerationConfig):
    """The ``Decoding`` for this model, and the sequences the output begins with ``(B, L0)``
    and their mask: the prompt itself (decoder), or a BOS column (encoder-decoder)."""
    seq2seq = not isinstance(model, DecoderModel)
    if not s.use_cache:
        decoding = Recompute(model, input_ids, attention_mask)
    elif seq2seq:
        decoding = CachedSeq2Seq(model, input_ids, attention_mask, s.max_new_tokens)
    else:
        decoding = CachedDecoder(model, input_ids, attention_mask, s.max_new_tokens, s.compile)
    if seq2seq:
        begin = start_tokens(model, input_ids.shape[0], input_ids.device)
        return decoding, begin, torch.ones_like(begin, dtype=torch.bool)
    if attention_mask is None:
        return decoding, input_ids, torch.ones_like(input_ids, dtype=torch.bool)
    return decoding, input_ids, attention_mask.bool()
