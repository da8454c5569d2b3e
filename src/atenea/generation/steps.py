"""The model calls of generation: one prefill, then one-token decode steps on a KV cache.

    prefill(model, ids (B, L), mask, cache)   -> next-token logits (B, V)   the whole prompt
    decode_step(model, tokens (B,), cache)    -> next-token logits (B, V)   one new token

The prefill is the model's own forward: left padding, positions and masks are its business,
and the cache (``model.new_cache``, preallocated for prompt + new tokens) records them. The
decode step is the hot loop, so it is written out here (gpt-fast style): ``one_token`` is a
function of tensors that attends to the *whole* preallocated cache, with a boolean key mask that
is True for the real tokens written so far. Every step then has the same shapes, and
``torch.compile`` turns it into one graph compiled once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.models.decoder import DecoderModel
from atenea.nn.cache import Cache
from atenea.nn.feedforward import ACTIVATIONS


def prefill(model: DecoderModel, input_ids: Tensor, attention_mask: Tensor | None, cache: Cache):
    """Run the prompt ``(B, L)`` through the model, filling the cache: logits ``(B, V)``."""
    return model(input_ids, attention_mask, cache=cache, logits_to_keep=1).logits[:, -1]


def model_step(model: DecoderModel, tokens: Tensor, cache: Cache) -> Tensor:
    """The model's own forward for one token per row ``(B,)``: logits ``(B, V)``. For what
    ``one_token`` does not cover (see ``writes_out``)."""
    return model(tokens[:, None], cache=cache, logits_to_keep=1).logits[:, -1]


def writes_out(model) -> bool:
    """Does ``one_token`` compute this model's forward? Decoder blocks that are pre-norm,
    self-attention only, without a score modifier, in eval mode (no dropout): every
    ``DecoderModel`` of today's configs."""
    return (
        isinstance(model, DecoderModel)
        and not model.training
        and all(
            layer.config.norm_position == "pre"
            and layer.cross_attention is None
            and layer.attention.score_mod is None
            for layer in model.layers
        )
    )


def decode_step(model: DecoderModel, tokens: Tensor, cache: Cache, step=None) -> Tensor:
    """One new token per row ``(B,)`` -> logits ``(B, V)`` for the token after it. ``step``:
    the function doing the work (``one_token``, or a compiled version of it)."""
    slot = cache.length
    if slot >= cache.key_mask.shape[1]:
        raise ValueError(f"cache: full at {slot} positions; create it with a larger capacity")
    cache.key_mask[:, slot] = True  # the new token is real in every row
    logits = (step or one_token)(
        model, tokens, cache.next_position, torch.tensor([slot], device=tokens.device),
        [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers],
        cache.key_mask,
    )  # fmt: skip
    cache.next_position = cache.next_position + 1
    for layer in cache.layers:
        layer.length = slot + 1
    return logits


def one_token(model, tokens, positions, slot, keys, values, key_mask, matvec=False) -> Tensor:
    """``DecoderModel.forward`` for one token per row, on a preallocated cache.

    Args:
        tokens, positions: ``(B,)`` the new tokens and their positions.
        slot: ``(1,)`` the cache index the new keys and values are written to.
        keys, values: per layer ``(B, Hkv, capacity, D)``, written in place.
        key_mask: ``(B, capacity)``, True where a key is a real token already written.
        matvec: compute the projections as multiply-and-sum (see ``linear``); for a compiled
            step with one row.
    """

    def project(x, layer: torch.nn.Linear):
        return linear(x, layer.weight, layer.bias, matvec)

    x = model.token_embedding(tokens)[:, None]  # (B, 1, dim)
    if model.position_embedding is not None:
        x = x + model.position_embedding.table(positions)[:, None]
    positions = positions[:, None]
    mask = key_mask[:, None, None, :]  # (B, 1, 1, capacity)
    for layer, k_cache, v_cache in zip(model.layers, keys, values):
        attention = layer.attention
        q, k, v = query_key_value(attention, layer.attention_norm(x), project)
        if attention.rotary is not None:
            q, k = attention.rotary(q, positions), attention.rotary(k, positions)
        k_cache.index_copy_(2, slot, k)
        v_cache.index_copy_(2, slot, v)
        out = attend(q, k_cache, v_cache, mask)
        x = x + project(out.transpose(1, 2).flatten(2), attention.o_proj)
        x = x + feed_forward(layer.feed_forward, layer.ffn_norm(x), project)
    return linear(model.final_norm(x)[:, 0], model.output_weight, None, matvec)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, matvec: bool) -> Tensor:
    """``x W^T + b``. With ``matvec``, as ``(x * W).sum(-1)`` in float32: compiled, that is one
    streaming pass over ``W`` with nothing materialized, which for a single row reads memory
    faster than the CPU's matrix libraries do (the decode step is bound by reading weights)."""
    if not matvec:
        return F.linear(x, weight, bias)
    out = (x.unsqueeze(-2).float() * weight.float()).sum(-1)
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype)


def query_key_value(attention, x: Tensor, project) -> tuple[Tensor, Tensor, Tensor]:
    """``MultiHeadAttention``'s projections of ``x (B, 1, dim)``: each ``(B, heads, 1, D)``."""
    heads, kv_heads = attention.num_heads, attention.num_kv_heads
    if attention.fused_qkv:
        q_width, kv_width = heads * attention.head_dim, kv_heads * attention.head_dim
        q, k, v = project(x, attention.qkv_proj).split([q_width, kv_width, kv_width], dim=-1)
    else:
        q = project(x, attention.q_proj)
        k, v = project(x, attention.k_proj), project(x, attention.v_proj)
    return attention._heads(q, heads), attention._heads(k, kv_heads), attention._heads(v, kv_heads)


def feed_forward(ffn, x: Tensor, project) -> Tensor:
    """``FeedForward`` of ``x``: ``down(act(up(x)))``, or ``down(silu(gate(x)) * up(x))``."""
    if ffn.gate is not None:
        hidden = F.silu(project(x, ffn.gate)) * project(x, ffn.up)
    else:
        hidden = ACTIVATIONS[ffn.activation](project(x, ffn.up))
    return project(hidden, ffn.down)


def attend(q: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """One query per row and head against the whole cache: ``q (B, Hq, 1, D)``, ``keys`` and
    ``values (B, Hkv, C, D)``, ``mask (B, 1, 1, C)`` (True = may attend) -> ``(B, Hq, 1, D)``.

    The textbook steps, written out: for one query they are two matrix-vector products, and
    PyTorch's fused kernel (or ``atenea.attention``'s mask machinery) costs more than the math
    at this size. No row is ever fully masked: each sees at least its own new token. Grouped
    heads: query head ``j * G + g`` reads key/value head ``j``, as in ``atenea.attention``.
    """
    batch, q_heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    # In float32 whatever the storage (as the fused kernels compute): bfloat16 scores would
    # keep 3 significant digits.
    grouped = q.float().reshape(batch, kv_heads, q_heads // kv_heads, dim)  # (B, Hkv, G, D)
    scores = (grouped @ keys.float().transpose(-1, -2)) * dim**-0.5  # (B, Hkv, G, C)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return (weights @ values.float()).to(q.dtype).reshape(batch, q_heads, 1, -1)


def seq2seq_step(model, tokens: Tensor, memory: Tensor, memory_mask, cache: Cache) -> Tensor:
    """Encoder-decoder: decoder tokens ``(B, T)`` (T = 1 after the first) -> logits ``(B, V)``.
    The cross-attention keys and values of the memory are computed on the first call."""
    logits, _ = model.decode(tokens, memory, memory_mask, cache=cache, logits_to_keep=1)
    return logits[:, -1]
