"""A causal decoder with a language-model head: GPT-2 and Llama from one config.

    ids (B, L) -> token (+ learned position) embeddings -> N pre-norm causal blocks
               -> final norm -> logits over the vocabulary (B, L, V)

Positions: ``learned`` (added to the embeddings), ``rotary`` (RoPE on q and k) or ``alibi`` (a
bias ``-slope * (i - j)`` on the scores, read from the distance of the key slots: a cache or a
segment memory keeps its slots contiguous in time, so that distance is the tokens' own).

Left-padded batches (batched generation) get per-row positions: each row's first real token is
position 0 wherever the padding puts it. With a ``Cache`` (``new_cache``) the model decodes
incrementally: the same forward runs the whole prompt (the prefill), then each new token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.attention import masks, scores
from atenea.models.common import (
    IGNORE,
    and_masks,
    check_attention_mask,
    check_ids,
    check_like_ids,
    init_weights,
    next_tokens,
    recorded,
    recording,
    run_blocks,
)
from atenea.models.config import DecoderConfig
from atenea.models.outputs import ModelOutput
from atenea.nn.block import TransformerBlock
from atenea.nn.cache import Cache, steps_of_fixed_shape
from atenea.nn.linear import Linear, linear
from atenea.nn.memory import SegmentMemory
from atenea.nn.norms import make_norm
from atenea.nn.positions import (
    LearnedPositions,
    RotaryEmbedding,
    positions_from_mask,
    positions_in_documents,
)


class DecoderModel(nn.Module):
    """Causal language model: ``input_ids (B, L)`` -> ``logits (B, L, vocab)``."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        c = self.config = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim)
        self.position_embedding = None
        self.rotary = None
        alibi = None  # ALiBi (Press et al. 2022): -slope * distance on the scores, no embedding
        if c.positions == "learned":
            self.position_embedding = LearnedPositions(c.max_positions, c.dim)
        elif c.positions == "rotary":
            self.rotary = RotaryEmbedding(
                c.resolved_head_dim, base=c.rope_theta, layout=c.rope_layout, scaling=c.rope_scaling
            )
        elif c.positions == "alibi":
            alibi = scores.alibi(c.num_heads)
        else:
            raise ValueError(
                f"positions: expected 'learned', 'rotary' or 'alibi', got {c.positions!r}"
            )
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            [TransformerBlock(c.block(), rotary=self.rotary, score_mod=alibi)
             for _ in range(c.num_layers)]
        )  # fmt: skip
        self.final_norm = make_norm(c.norm, c.dim, c.norm_eps)
        self.lm_head = None if c.tie_embeddings else Linear(c.dim, c.vocab_size, bias=False)
        self.apply(init_weights)

    @property
    def output_weight(self) -> Tensor:
        """The ``(vocab, dim)`` matrix that turns states into logits (tied or not)."""
        return self.token_embedding.weight if self.lm_head is None else self.lm_head.weight

    def new_cache(
        self, batch: int, capacity: int, dtype=None, device=None, whole: bool = False
    ) -> Cache:
        """An empty ``Cache`` for ``batch`` rows of up to ``capacity`` tokens (prompt + new);
        ``whole=True`` for decode steps of fixed shapes (``torch.compile``, CUDA graphs)."""
        if whole and not steps_of_fixed_shape(self.layers):
            raise ValueError(
                "new_cache: whole=True places a one-token step at the end of the buffer, but "
                "this model's score modifier depends on the positions; use whole=False"
            )
        weight = self.token_embedding.weight
        return Cache.for_blocks(
            self.layers, batch, capacity, dtype or weight.dtype, device or weight.device, whole
        )

    def new_memory(self, batch: int) -> SegmentMemory:
        """An empty segment memory (``config.memory_len`` slots per layer, and the compressed
        ones) for ``batch`` streams of text; pass it as ``memory=`` to each segment in order."""
        c = self.config
        return SegmentMemory(
            c.num_layers, batch, c.memory_len, c.compressed_len, c.compression_rate,
            device=self.token_embedding.weight.device,
        )  # fmt: skip

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        cache: Cache | None = None,
        memory: SegmentMemory | None = None,
        document_ids: Tensor | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int = 0,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        intermediates=None,
    ) -> ModelOutput:
        """Args:
        input_ids: ``(B, L)`` token ids (with a cache: the new tokens only).
        attention_mask: ``(B, L)``, 1 for tokens, 0 for padding (left padding for batched
            generation). With a cache it covers the new tokens only.
        position_ids: ``(B, L)``; default: counted from the mask (or from the cache). ALiBi
            does not read them: its distances are those of the key slots.
        cache: a ``Cache`` from ``new_cache``; the new keys/values are appended to it.
        memory: a ``SegmentMemory`` from ``new_memory``: ``input_ids`` is the next segment of
            the texts it remembers and attends to the memory too (``document_ids`` then says
            where documents start, across segments; no padding, no cache).
        document_ids: ``(B, L)`` packed sequences: the document of every token. A token
            attends only within its document (``masks.document(ids) & masks.causal()``) and
            positions restart at 0 with each document.
        labels: ``(B, L)`` next-token targets (usually ``input_ids``; -100 = ignore): the
            loss compares position ``t``'s logits with ``labels[t + 1]``.
        logits_to_keep: compute logits for the last N positions only (0 = all).
        """
        c = self.config
        check_ids(input_ids, c.vocab_size)
        check_attention_mask(attention_mask, input_ids)
        check_like_ids(labels, input_ids, "labels", "next-token targets, -100 = ignore")
        if position_ids is not None:
            check_like_ids(position_ids, input_ids, "position_ids", "each token's position")
            if c.positions == "learned":  # a row of the table each
                check_ids(position_ids, c.max_positions, "position_ids", "positions",
                          "this model's max_positions")  # fmt: skip
        if labels is not None and logits_to_keep:
            raise ValueError("labels: the loss needs every position's logits (logits_to_keep=0)")
        inter = recording(output_attentions, output_hidden_states, intermediates)

        write = None
        if memory is not None:  # the memory speaks the cache's protocol (nn/memory.py)
            if cache is not None or attention_mask is not None:
                raise ValueError("memory: runs whole segments, without a cache or padding")
            positions, mask, write = memory.advance(input_ids, document_ids)
            cache, document_ids = memory, None
        elif cache is not None:  # prefill or decode step: the cache knows the past
            new_tokens = (
                attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            )
            positions, mask, write = cache.advance(new_tokens)
        else:
            if attention_mask is not None:
                positions = positions_from_mask(attention_mask)
            else:
                positions = torch.arange(input_ids.shape[1], device=input_ids.device)
                positions = positions.expand_as(input_ids)
            mask = and_masks(masks.causal(), masks.from_attention_mask(attention_mask))
        if document_ids is not None:
            if cache is not None or tuple(document_ids.shape) != tuple(input_ids.shape):
                raise ValueError(
                    f"document_ids: expected the shape of input_ids {tuple(input_ids.shape)} and "
                    f"no cache, got {tuple(document_ids.shape)}"
                )
            mask = and_masks(mask, masks.document(document_ids))
            positions = positions_in_documents(document_ids)
        if position_ids is not None:  # the caller's positions win, with or without a cache
            positions = position_ids

        x = self.token_embedding(input_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions)
        x = self.dropout(x)
        x = run_blocks(
            self.layers, x, inter, final_norm=self.final_norm, cache=cache, write=write,
            mask=mask, positions=positions,
        )  # fmt: skip

        kept = x[:, -logits_to_keep:] if logits_to_keep else x
        logits = linear(kept, self.output_weight)
        loss = None
        if labels is not None:
            targets = next_tokens(labels)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        return ModelOutput(
            logits=logits,
            last_hidden_state=x,
            loss=loss,
            **recorded(inter, output_attentions, output_hidden_states, intermediates),
        )
