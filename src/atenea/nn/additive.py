"""Additive attention (Bahdanau, Cho & Bengio 2015): the score is a small network, not a dot
product: ``score(q, k_j) = v^T tanh(W_q q + W_k k_j)``. It was the attention of the first neural
translation systems (an RNN decoder state ``q`` attending over every encoder state ``k_j``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atenea.attention.backends.reference import safe_softmax
from atenea.attention.masks import as_mask
from atenea.nn.linear import Linear


class AdditiveAttention(nn.Module):
    """``weights = softmax_j(v^T tanh(W_q q + W_k k_j))``, ``context = sum_j weights_j values_j``.

    Args:
        query_dim, key_dim: widths of the queries and of the keys (e.g. decoder and encoder
            states); hidden_dim: width of the scoring network.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_proj = Linear(query_dim, hidden_dim, bias=False)  # W_q
        self.key_proj = Linear(key_dim, hidden_dim, bias=True)  # W_k (+ b)
        self.score = Linear(hidden_dim, 1, bias=False)  # v

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor | None = None, mask=None
    ) -> tuple[Tensor, Tensor]:
        """``query (B, Lq, query_dim)`` or ``(B, query_dim)``, ``keys (B, Lk, key_dim)``,
        ``values (B, Lk, Dv)`` (default: the keys). ``mask``: an ``atenea.masks`` mask or a
        boolean tensor broadcastable to ``(B, 1, Lq, Lk)``, True = may attend.

        Returns ``context (B, Lq, Dv)`` and ``weights (B, Lq, Lk)`` (each row sums to 1, or is
        all zeros for a query that may attend to nothing), without the Lq axis if the query had
        none.
        """
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        values = keys if values is None else values
        scores = self.scores(query, self.project_keys(keys))  # (B, Lq, Lk)
        if mask is not None:
            mask = as_mask(mask)
            mask.validate(query.shape[0], 1, query.shape[1], keys.shape[1])  # as attention()
            allowed = mask.materialize(query.shape[1], keys.shape[1], device=query.device)
            scores = scores.masked_fill(~allowed[:, 0], float("-inf"))  # (Bm, Lq, Lk)
        weights = safe_softmax(scores)
        context = weights @ values
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``W_k k_j + b``: ``keys (B, Lk, key_dim)`` -> ``(B, Lk, hidden_dim)``. It does not
        depend on the query, so a decoder computes it once per source (``scores`` takes it)."""
        return self.key_proj(keys)

    def scores(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        """``v^T tanh(W_q q_i + projected_keys_j)``: ``query (B, Lq, query_dim)``,
        ``projected_keys (B, Lk, hidden_dim)`` (from ``project_keys``) -> ``(B, Lq, Lk)``."""
        hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + projected_keys.unsqueeze(1))
        return self.score(hidden).squeeze(-1)
