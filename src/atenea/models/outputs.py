"""What a model's forward returns: small dataclasses, and a typed container for inspection.

``Intermediates`` is filled when passed to a forward (``model(ids, intermediates=inter)``):
per layer an ``AttentionRecord`` (queries, keys and log-sum-exp: enough to rebuild any rows or
heads of the attention weights later, without ever holding ``layers x heads x L x L``) and,
if asked, the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from atenea.nn.attention import AttentionRecord


@dataclass
class Intermediates:
    """Per-layer internals of one forward pass.

    - ``attention``: one ``AttentionRecord`` per self-attention layer (decoder's, for
      encoder-decoder models); ``record.weights(rows=..., heads=...)`` rebuilds weights.
    - ``cross_attention``: one per cross-attention layer (encoder-decoder models).
    - ``encoder_attention``: the encoder's, for encoder-decoder models.
    - ``hidden_states``: the input of every layer and the final output, if
      ``keep_hidden_states``.
    """

    keep_hidden_states: bool = False
    attention: list[AttentionRecord] = field(default_factory=list)
    cross_attention: list[AttentionRecord] = field(default_factory=list)
    encoder_attention: list[AttentionRecord] = field(default_factory=list)
    hidden_states: list[Tensor] = field(default_factory=list)
    encoder_hidden_states: list[Tensor] = field(default_factory=list)

    def attentions(self) -> tuple[Tensor, ...]:
        """All self-attention weights, one ``(B, H, Lq, Lk)`` tensor per layer."""
        return tuple(record.weights() for record in self.attention)


@dataclass
class ModelOutput:
    """``logits`` (models with a head) and/or ``last_hidden_state`` ``(B, L, dim)``;
    ``attentions``: one ``(B, H, Lq, Lk)`` tensor per layer when ``output_attentions=True``
    (computed on the fast path from the log-sum-exp); ``loss`` when labels were given."""

    logits: Tensor | None = None
    last_hidden_state: Tensor | None = None
    pooled: Tensor | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None
    encoder_attentions: tuple[Tensor, ...] | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    encoder_last_hidden_state: Tensor | None = None
    loss: Tensor | None = None
    intermediates: Intermediates | None = None
