"""The original Transformer (Vaswani et al. 2017): an encoder reads the source; a decoder writes
the target one token at a time, with causal self-attention over what it has written and
cross-attention to the encoder's output (the *memory*).

    source (B, S) -> embeddings * sqrt(dim) + sinusoids -> N encoder blocks -> memory (B, S, dim)
    target (B, T) -> embeddings * sqrt(dim) + sinusoids -> N decoder blocks (self + cross)
                  -> logits (B, T, tgt_vocab)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.attention import masks
from atenea.models.common import (
    and_masks,
    check_attention_mask,
    check_ids,
    init_weights,
    recording,
    run_blocks,
)
from atenea.models.config import EncoderDecoderConfig
from atenea.models.outputs import Intermediates, ModelOutput
from atenea.nn.block import TransformerBlock
from atenea.nn.cache import Cache
from atenea.nn.linear import Linear, linear
from atenea.nn.positions import SinusoidalPositions, positions_from_mask


class EncoderDecoderModel(nn.Module):
    """``forward(src_ids, tgt_ids)`` -> logits ``(B, T, tgt_vocab)``; ``encode`` and ``decode``
    separately for generation (the encoder runs once)."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        c = self.config = config
        if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary, got src_vocab_size {c.src_vocab_size} "
                f"and tgt_vocab_size {c.tgt_vocab_size}"
            )
        self.source_embedding = nn.Embedding(c.src_vocab_size, c.dim, padding_idx=c.pad_token_id)
        if c.share_embeddings:
            self.target_embedding = self.source_embedding
        else:
            self.target_embedding = nn.Embedding(
                c.tgt_vocab_size, c.dim, padding_idx=c.pad_token_id
            )
        self.positions = SinusoidalPositions(c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder_layers = nn.ModuleList(
            [TransformerBlock(c.block(cross=False)) for _ in range(c.num_encoder_layers)]
        )
        self.decoder_layers = nn.ModuleList(
            [TransformerBlock(c.block(cross=True)) for _ in range(c.num_decoder_layers)]
        )
        pre = c.norm_position == "pre"  # pre-norm stacks end with a norm; post-norm ones do not
        self.encoder_norm = nn.LayerNorm(c.dim, eps=c.norm_eps) if pre else None
        self.decoder_norm = nn.LayerNorm(c.dim, eps=c.norm_eps) if pre else None
        self.output = None if c.tie_output else Linear(c.dim, c.tgt_vocab_size, bias=False)
        self.apply(init_weights)

    @property
    def output_weight(self) -> Tensor:
        return self.target_embedding.weight if self.output is None else self.output.weight

    def _embed(self, table: nn.Embedding, ids: Tensor, positions: Tensor) -> Tensor:
        # The paper scales embeddings by sqrt(dim) so they are not drowned by the sinusoids.
        dtype = table.weight.dtype
        x = table(ids) * math.sqrt(self.config.dim) + self.positions(positions, dtype).to(dtype)
        return self.dropout(x)

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None, intermediates=None) -> Tensor:
        """``src_ids (B, S)``, ``src_mask (B, S)`` (1 = token) -> memory ``(B, S, dim)``. A
        row's first real token is at position 0 whichever side it is padded on."""
        c = self.config
        check_ids(src_ids, c.src_vocab_size, "src_ids")
        check_attention_mask(src_mask, src_ids)
        if src_mask is None:
            positions = torch.arange(src_ids.shape[1], device=src_ids.device).expand_as(src_ids)
        else:
            positions = positions_from_mask(src_mask)
        x = self._embed(self.source_embedding, src_ids, positions)
        return run_blocks(
            self.encoder_layers, x, intermediates, side="encoder_", final_norm=self.encoder_norm,
            mask=masks.from_attention_mask(src_mask),
        )  # fmt: skip

    def new_cache(self, batch: int, capacity: int, dtype=None, device=None) -> Cache:
        """A ``Cache`` for decoding ``capacity`` target tokens; each cross-attention layer keeps
        the memory's keys and values once its first step has computed them."""
        weight = self.target_embedding.weight
        return Cache.for_blocks(
            self.decoder_layers, batch, capacity, dtype or weight.dtype, device or weight.device
        )

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        cache: Cache | None = None,
        logits_to_keep: int = 0,
        intermediates=None,
    ) -> tuple[Tensor, Tensor]:
        """``tgt_ids (B, T)`` (with a cache: the new tokens) attending to ``memory (B, S, dim)``;
        ``memory_mask (B, S)`` and ``tgt_mask (B, T)``: 1 = token. Returns ``(logits, states)``."""
        c = self.config
        check_ids(tgt_ids, c.tgt_vocab_size, "tgt_ids")
        check_attention_mask(tgt_mask, tgt_ids)
        write = None
        if cache is not None:
            new_tokens = tgt_mask if tgt_mask is not None else torch.ones_like(tgt_ids)
            positions, self_mask, write = cache.advance(new_tokens)
        else:
            positions = torch.arange(tgt_ids.shape[1], device=tgt_ids.device).expand_as(tgt_ids)
            self_mask = and_masks(masks.causal(), masks.from_attention_mask(tgt_mask))
        x = self._embed(self.target_embedding, tgt_ids, positions)
        x = run_blocks(
            self.decoder_layers, x, intermediates, final_norm=self.decoder_norm, cache=cache,
            write=write, mask=self_mask, memory=memory,
            memory_mask=masks.from_attention_mask(memory_mask),
        )  # fmt: skip
        kept = x[:, -logits_to_keep:] if logits_to_keep else x
        return linear(kept, self.output_weight), x

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        intermediates: Intermediates | None = None,
    ) -> ModelOutput:
        """Teacher forcing: ``tgt_ids`` is the target shifted right (starting with BOS);
        ``labels (B, T)`` the tokens to predict at each position (-100 = ignore)."""
        inter = recording(output_attentions, False, intermediates)
        memory = self.encode(src_ids, src_mask, inter)
        logits, states = self.decode(tgt_ids, memory, src_mask, tgt_mask, intermediates=inter)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

        def weights(kind):
            return tuple(r.weights() for r in getattr(inter, kind)) if output_attentions else None

        return ModelOutput(
            logits=logits,
            last_hidden_state=states,
            encoder_last_hidden_state=memory,
            attentions=weights("attention"),
            cross_attentions=weights("cross_attention"),
            encoder_attentions=weights("encoder_attention"),
            loss=loss,
            intermediates=intermediates,
        )
