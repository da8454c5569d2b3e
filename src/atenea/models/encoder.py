"""A BERT-style encoder and its heads.

    ids (B, L) -> token + position (+ segment) embeddings -> N bidirectional blocks -> (B, L, dim)

Heads: ``MaskedLMHead`` (predict masked tokens), ``ClassificationHead`` (one label per
sequence, from the [CLS] state or the mean of the states) and ``mean_pool`` sentence
embeddings (sentence-transformers' MiniLM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.attention import masks
from atenea.models.common import (
    check_attention_mask,
    check_ids,
    check_like_ids,
    init_weights,
    recorded,
    recording,
    run_blocks,
)
from atenea.models.config import EncoderConfig
from atenea.models.outputs import ModelOutput
from atenea.nn.block import TransformerBlock
from atenea.nn.feedforward import ACTIVATIONS
from atenea.nn.linear import Linear, linear
from atenea.nn.positions import LearnedPositions, SinusoidalPositions


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Mean of the real tokens' states: ``hidden (B, L, dim)``, ``attention_mask (B, L)`` ->
    ``(B, dim)``."""
    if attention_mask is None:
        return hidden.mean(1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class EncoderModel(nn.Module):
    """Bidirectional encoder: ``input_ids (B, L)`` -> ``last_hidden_state (B, L, dim)``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = self.config = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        if c.positions == "learned":
            self.position_embedding = LearnedPositions(c.max_positions, c.dim)
        elif c.positions == "sinusoidal":
            self.position_embedding = SinusoidalPositions(c.dim)
        else:
            raise ValueError(f"positions: expected 'learned' or 'sinusoidal', got {c.positions!r}")
        self.segment_embedding = (
            nn.Embedding(c.type_vocab_size, c.dim) if c.type_vocab_size else None
        )
        post = c.norm_position == "post"
        self.embedding_norm = nn.LayerNorm(c.dim, eps=c.norm_eps) if post else None
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList([TransformerBlock(c.block()) for _ in range(c.num_layers)])
        self.final_norm = None if post else nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pooler = Linear(c.dim, c.dim) if c.pooler else None
        self.apply(init_weights)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Token + position (+ segment) embeddings ``(B, L, dim)``."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        dtype = self.token_embedding.weight.dtype
        x = self.token_embedding(input_ids) + self.position_embedding(positions, dtype).to(dtype)
        if self.segment_embedding is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.segment_embedding(token_type_ids)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        return self.dropout(x)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        intermediates=None,
    ) -> ModelOutput:
        """``input_ids (B, L)``; ``attention_mask (B, L)``: 1 for tokens, 0 for padding;
        ``token_type_ids (B, L)``: segment of each token (sentence A = 0, B = 1)."""
        c = self.config
        check_ids(input_ids, c.vocab_size)
        check_attention_mask(attention_mask, input_ids)
        if token_type_ids is not None and self.segment_embedding is not None:
            check_like_ids(token_type_ids, input_ids, "token_type_ids", "0 = sentence A, 1 = B")
            check_ids(token_type_ids, c.type_vocab_size, "token_type_ids", "segment ids",
                      "this model's type_vocab_size")  # fmt: skip
        if c.positions == "learned" and input_ids.shape[1] > c.max_positions:
            raise ValueError(
                f"input_ids: {input_ids.shape[1]} tokens, but this model has positions for at "
                f"most {c.max_positions}; truncate the input"
            )
        inter = recording(output_attentions, output_hidden_states, intermediates)
        x = self.embed(input_ids, token_type_ids)
        mask = masks.from_attention_mask(attention_mask)
        x = run_blocks(self.layers, x, inter, final_norm=self.final_norm, mask=mask)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=x,
            pooled=pooled,
            **recorded(inter, output_attentions, output_hidden_states, intermediates),
        )

    def sentence_embedding(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, normalize: bool = True
    ) -> Tensor:
        """Mean-pooled (and L2-normalised) sentence vectors ``(B, dim)``, as sentence-transformers
        computes them for all-MiniLM-L6-v2."""
        hidden = self(input_ids, attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    @torch.inference_mode()
    def encode(
        self, texts: list[str], tokenizer, batch_size: int = 64, normalize: bool = True
    ) -> Tensor:
        """Sentence embeddings ``(N, dim)`` of many texts, in their order. The texts are
        tokenized once and batched longest first, so a batch carries almost no padding
        (sentence-transformers sorts by length for the same reason)."""
        ids = tokenizer.encode_batch(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        weight = self.token_embedding.weight
        out = torch.empty(len(ids), self.config.dim, dtype=weight.dtype, device=weight.device)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer.pad([ids[i] for i in chosen])
            out[chosen] = self.sentence_embedding(
                batch["input_ids"].to(weight.device),
                batch["attention_mask"].to(weight.device),
                normalize,
            )
        return out


class MaskedLMHead(nn.Module):
    """BERT's masked-language-model head: dense + activation + LayerNorm, then scores over the
    vocabulary with the (tied) token embedding matrix plus a bias."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = Linear(config.dim, config.dim)
        self.activation = ACTIVATIONS[config.activation]
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, embedding_weight: Tensor) -> Tensor:
        """``hidden (B, L, dim)`` -> logits ``(B, L, vocab)``."""
        return linear(self.norm(self.activation(self.dense(hidden))), embedding_weight, self.bias)


class EncoderForMaskedLM(nn.Module):
    """Encoder + masked-LM head. ``labels (B, L)``: the original token where masked, -100
    elsewhere (ignored by the loss)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = EncoderModel(config)
        self.mlm_head = MaskedLMHead(config)
        self.mlm_head.apply(init_weights)

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, *, labels=None, **kwargs
    ):
        out = self.encoder(input_ids, attention_mask, token_type_ids, **kwargs)
        out.logits = self.mlm_head(out.last_hidden_state, self.encoder.token_embedding.weight)
        if labels is not None:
            out.loss = F.cross_entropy(
                out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100
            )
        return out


class ClassificationHead(nn.Module):
    """One label per sequence from the ``"cls"`` state (through BERT's pooler when the encoder
    has one) or the ``"mean"`` of the real tokens' states."""

    def __init__(self, dim: int, num_labels: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: expected 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = Linear(dim, num_labels)

    def forward(self, output: ModelOutput, attention_mask: Tensor | None) -> Tensor:
        if self.pooling == "mean":
            summary = mean_pool(output.last_hidden_state, attention_mask)
        else:
            summary = output.pooled if output.pooled is not None else output.last_hidden_state[:, 0]
        return self.classifier(self.dropout(summary))


class EncoderForSequenceClassification(nn.Module):
    """Encoder + classification head. ``labels (B,)``: class indices."""

    def __init__(self, config: EncoderConfig, num_labels: int, pooling: str = "cls"):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        self.encoder = EncoderModel(config)
        self.head = ClassificationHead(config.dim, num_labels, pooling, config.dropout)
        self.head.apply(init_weights)

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, *, labels=None, **kwargs
    ):
        out = self.encoder(input_ids, attention_mask, token_type_ids, **kwargs)
        out.logits = self.head(out, attention_mask)
        if labels is not None:
            out.loss = F.cross_entropy(out.logits, labels)
        return out
