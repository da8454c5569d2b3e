"""The model calls of generation: one prefill, then one-token decode steps on a KV cache.

    prefill(model, ids (B, L), mask, cache)   -> next-token logits (B, V)   the whole prompt
    decode_step(model, tokens (B,), cache)    -> next-token logits (B, V)   one new token

The prefill is the model's own forward: left padding, positions and masks are its business,
and the cache (``model.new_cache``, preallocated for prompt + new tokens) records them. The
decode step is the hot loop: ``DecoderModel.step`` attends to the *whole* preallocated cache,
with a boolean key mask that is True for the real tokens written so far. Every step then has
the same shapes, and ``torch.compile`` turns it into one graph compiled once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.models.decoder import DecoderModel
from atenea.nn.cache import Cache


def prefill(model: DecoderModel, input_ids: Tensor, attention_mask: Tensor | None, cache: Cache):
    """Run the prompt ``(B, L)`` through the model, filling the cache: logits ``(B, V)``."""
    return model(input_ids, attention_mask, cache=cache, logits_to_keep=1).logits[:, -1]


def model_step(model: DecoderModel, tokens: Tensor, cache: Cache) -> Tensor:
    """The model's own forward for one token per row ``(B,)``: logits ``(B, V)``. For models
    ``DecoderModel.step`` does not cover (see ``static_step``)."""
    return model(tokens[:, None], cache=cache, logits_to_keep=1).logits[:, -1]


def static_step(model) -> bool:
    """Does ``DecoderModel.step`` compute this model's forward (eval mode, no score modifier)?"""
    return isinstance(model, DecoderModel) and model.steps_on_static_cache()


def model_static_step(model: DecoderModel, *tensors) -> Tensor:
    """``model.step(*tensors)``: a plain function of the model, for ``torch.compile``."""
    return model.step(*tensors)


def decode_step(model: DecoderModel, tokens: Tensor, cache: Cache, step=None,
                whole_cache: bool = False) -> Tensor:  # fmt: skip
    """One new token per row ``(B,)`` -> logits ``(B, V)`` for the token after it. ``step``:
    the function doing the work (``model_static_step``, or a compiled version of it).
    ``whole_cache``: hand the step the whole preallocated cache, the same shapes at every step
    (for a compiled step); otherwise views of the part filled so far, so the attention of an
    early step does not read the empty rest (12 layers x 1024 positions: 1.8 ms a step)."""
    positions = cache.next_position  # the new tokens' positions, before the cache moves on
    slot = cache.advance_one()
    end = cache.key_mask.shape[1] if whole_cache else slot + 1
    return (step or model_static_step)(
        model, tokens, positions, torch.tensor([slot], device=tokens.device),
        [layer.keys[:, :, :end] for layer in cache.layers],
        [layer.values[:, :, :end] for layer in cache.layers],
        cache.key_mask[:, :end],
    )  # fmt: skip


def seq2seq_step(model, tokens: Tensor, memory: Tensor, memory_mask, cache: Cache) -> Tensor:
    """Encoder-decoder: decoder tokens ``(B, T)`` (T = 1 after the first) -> logits ``(B, V)``.
    The cross-attention keys and values of the memory are computed on the first call."""
    logits, _ = model.decode(tokens, memory, memory_mask, cache=cache, logits_to_keep=1)
    return logits[:, -1]
