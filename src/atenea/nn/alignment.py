"""The alignment model of a recurrent translator: one decoder state (the query) against every
encoder state (the keys), three ways of scoring, one softmax over the source.

    additive  e_j = v^T tanh(W q + U k_j)      Bahdanau, Cho & Bengio (2015)
    dot       e_j = q^T k_j                    Luong, Pham & Manning (2015)
    general   e_j = q^T W k_j                  Luong, Pham & Manning (2015)

    weights = softmax_j(e_j) over the source positions the mask keeps (the others get exactly 0)
    context = sum_j weights_j k_j

The part of each score that does not depend on the query (``U k_j``, ``W k_j``) is computed
once per source by ``prepare`` and passed to every decoder step: a decoder calls the module
once per output word, and the source does not change between calls.
"""

from __future__ import annotations

from torch import Tensor, nn

from atenea.attention.backends.reference import safe_softmax
from atenea.nn.additive import AdditiveAttention
from atenea.nn.linear import Linear

SCORES = ("additive", "dot", "general")


class Alignment(nn.Module):
    """``forward(query (B, Dq), keys (B, S, Dk), mask (B, S))`` -> ``context (B, Dk)``,
    ``weights (B, S)``.

    Args:
        query_dim, key_dim: widths of the decoder state and of the encoder states.
        hidden_dim: width of the additive score's network (unused by ``dot`` and ``general``).
        score: ``"additive"`` (an ``AdditiveAttention``), ``"dot"`` (needs ``query_dim ==
            key_dim``) or ``"general"`` (a ``key_dim -> query_dim`` matrix, no bias).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, score: str = "additive"):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
        if score == "dot" and query_dim != key_dim:
            raise ValueError(
                f"score='dot' compares the query with the keys directly, so query_dim must equal "
                f"key_dim; got {query_dim} and {key_dim} ('general' learns a map between them)"
            )
        self.additive = (
            AdditiveAttention(query_dim, key_dim, hidden_dim) if score == "additive" else None
        )
        self.general = Linear(key_dim, query_dim, bias=False) if score == "general" else None

    def prepare(self, keys: Tensor) -> Tensor:
        """The query-free part of the scores, ``keys (B, S, Dk)`` -> ``(B, S, hidden_dim)``
        (additive: ``U k_j``), ``(B, S, Dq)`` (general: ``W k_j``) or the keys (dot)."""
        if self.additive is not None:
            return self.additive.project_keys(keys)
        if self.general is not None:
            return self.general(keys)
        return keys

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        """``query (B, Dq)``, ``prepared (B, S, ·)`` from ``prepare`` -> scores ``(B, S)``."""
        if self.additive is not None:
            return self.additive.scores(query[:, None], prepared)[:, 0]
        return (prepared @ query[:, :, None])[:, :, 0]

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor | None = None,
        prepared: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``query (B, Dq)``, ``keys (B, S, Dk)``, ``mask (B, S)`` (True or 1 = a source token;
        None = all), ``prepared``: ``prepare(keys)`` if already computed. Returns ``context (B,
        Dk)`` and ``weights (B, S)`` (a row sums to 1, or is all 0 when the mask keeps nothing)."""
        if query.dim() != 2 or keys.dim() != 3 or keys.shape[0] != query.shape[0]:
            raise ValueError(
                f"query, keys: expected (B, Dq) and (B, S, Dk), got {tuple(query.shape)} and "
                f"{tuple(keys.shape)}"
            )
        scores = self.scores(query, self.prepare(keys) if prepared is None else prepared)
        if mask is not None:
            if tuple(mask.shape) != tuple(scores.shape):
                raise ValueError(
                    f"mask: expected (B, S) = {tuple(scores.shape)}, one flag per source token, "
                    f"got {tuple(mask.shape)}"
                )
            scores = scores.masked_fill(~mask.bool(), float("-inf"))
        weights = safe_softmax(scores)
        return (weights[:, None] @ keys)[:, 0], weights
