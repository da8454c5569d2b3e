"""Multi-head attention as a module: it projects and reshapes; ``atenea.attention`` does the math.

    q = x W_Q, k = m W_K, v = m W_V       (m = x for self-attention, the encoder memory for cross)
    split into heads -> (B, H, L, Dh), rotate q and k (RoPE, optional)
    o = atenea.attention(q, k, v, mask, score_mod)   -> (B, Hq, L, Dh)
    merge heads -> o W_O

Grouped-query attention uses fewer key/value heads (``num_kv_heads``); multi-query uses one.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from atenea.attention.core import attention
from atenea.attention.weights import attention_weights
from atenea.nn.cache import KVCache, MemoryCache, Write
from atenea.nn.linear import Linear
from atenea.nn.positions import RotaryEmbedding


@dataclass
class AttentionRecord:
    """What one attention call needs to rebuild any of its weights later, without having kept
    the ``Lq x Lk`` matrix: queries, keys, the log-sum-exp and the call's mask / modifier.
    ``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``lse (B, Hq, Lq)``."""

    q: Tensor
    k: Tensor
    lse: Tensor
    mask: object
    score_mod: object
    scale: float

    def weights(self, rows=None, heads=None) -> Tensor:
        """Attention probabilities ``(B, len(heads), len(rows), Lk)`` (all by default)."""
        return attention_weights(
            self.q, self.k, lse=self.lse, mask=self.mask, score_mod=self.score_mod,
            scale=self.scale, rows=rows, heads=heads,
        )  # fmt: skip


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with ``num_heads`` query heads and ``num_kv_heads`` key/value
    heads (default: as many; 1 = multi-query).

    Args:
        dim: model width of ``x``.
        num_heads, num_kv_heads, head_dim: heads and their size (default ``dim // num_heads``).
        memory_dim: width of the memory attended to in cross-attention (default ``dim``).
        bias / out_bias: biases of the q/k/v and output projections.
        fused_qkv: one ``qkv_proj`` matrix instead of ``q_proj``, ``k_proj``, ``v_proj``
            (self-attention only; GPT-2 stores its weights so).
        dropout: dropout on the attention weights while training.
        rotary: a ``RotaryEmbedding`` applied to q and k (self-attention).
        score_mod: a score modifier (``atenea.scores``) for every call.
        backend: passed to ``atenea.attention``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        memory_dim: int | None = None,
        bias: bool = True,
        out_bias: bool | None = None,
        fused_qkv: bool = False,
        dropout: float = 0.0,
        rotary: RotaryEmbedding | None = None,
        score_mod=None,
        backend: str = "auto",
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads < 1 or num_kv_heads < 1:
            raise ValueError(
                f"attention: num_heads and num_kv_heads must be >= 1, got {num_heads} and "
                f"{num_kv_heads}"
            )
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(
                    f"attention: dim {dim} is not divisible by num_heads {num_heads}; give head_dim"
                )
            head_dim = dim // num_heads
        if num_heads % num_kv_heads:
            raise ValueError(
                f"attention: num_heads {num_heads} must be a multiple of num_kv_heads "
                f"{num_kv_heads}"
            )
        if fused_qkv and memory_dim is not None:
            raise ValueError("attention: fused_qkv is for self-attention (no memory_dim)")
        if rotary is not None and rotary.head_dim != head_dim:  # it turns pairs of one head
            raise ValueError(
                f"attention: the rotary embedding is for head_dim {rotary.head_dim}, the heads "
                f"have {head_dim}"
            )
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        q_width, kv_width = num_heads * head_dim, num_kv_heads * head_dim
        if fused_qkv:
            self.qkv_proj = Linear(dim, q_width + 2 * kv_width, bias=bias)
        else:
            source = dim if memory_dim is None else memory_dim
            self.q_proj = Linear(dim, q_width, bias=bias)
            self.k_proj = Linear(source, kv_width, bias=bias)
            self.v_proj = Linear(source, kv_width, bias=bias)
        self.o_proj = Linear(q_width, dim, bias=bias if out_bias is None else out_bias)
        self.fused_qkv, self.dropout, self.rotary = fused_qkv, dropout, rotary
        self.score_mod, self.backend = score_mod, backend

    def _heads(self, t: Tensor, heads: int) -> Tensor:
        """``(B, L, heads * Dh)`` -> ``(B, heads, L, Dh)``."""
        return t.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)

    def _project(self, x: Tensor, memory: Tensor | None, cache):
        """Queries of ``x``; keys/values of ``x``, or of the memory (computed once and kept in
        a ``MemoryCache`` when there is one)."""
        if self.fused_qkv:
            if memory is not None:  # one matrix for q, k and v: of x, never of a memory
                raise ValueError("attention: fused_qkv is for self-attention; got a memory")
            q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
            q, k, v = self.qkv_proj(x).split([q_width, kv_width, kv_width], dim=-1)
            return (
                self._heads(q, self.num_heads),
                self._heads(k, self.num_kv_heads),
                self._heads(v, self.num_kv_heads),
            )
        q = self._heads(self.q_proj(x), self.num_heads)
        if memory is not None and cache is not None and cache.keys is not None:
            return q, cache.keys, cache.values
        source = x if memory is None else memory
        k = self._heads(self.k_proj(source), self.num_kv_heads)
        v = self._heads(self.v_proj(source), self.num_kv_heads)
        if memory is not None and cache is not None:
            cache.keys, cache.values = k, v
        return q, k, v

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask=None,
        positions: Tensor | None = None,
        cache: KVCache | MemoryCache | None = None,
        write: Write | None = None,
        records: list | None = None,
    ) -> Tensor:
        """``x (B, L, dim)`` -> ``(B, L, dim)``.

        Args:
            memory: ``(B, S, memory_dim)`` for cross-attention; None for self-attention.
            mask: an ``atenea.masks`` mask (True = may attend) over ``(L, keys)``.
            positions: ``(B, L)`` positions of ``x`` for the rotary embedding.
            cache: self-attention: this layer's ``KVCache``, where the new keys/values go at
                ``write`` (from ``Cache.advance``) and whose slots the queries attend to;
                cross-attention: a ``MemoryCache`` (the memory's keys/values, computed once).
            records: a list to which an ``AttentionRecord`` is appended (for weights later).
        """
        q, k, v = self._project(x, memory, cache)
        if self.rotary is not None and memory is None:
            if positions is None:
                raise ValueError("attention: a rotary embedding needs the token positions")
            q, k = self.rotary.rotate_pair(q, k, positions)
        if cache is not None and memory is None:
            if write is None:
                raise ValueError("attention: a KV cache needs the Write of Cache.advance")
            k, v = cache.update(k, v, write)
        result = attention(
            q, k, v, mask=mask, score_mod=self.score_mod,
            dropout_p=self.dropout if self.training else 0.0,
            return_lse=records is not None, backend=self.backend,
        )  # fmt: skip
        if records is not None:
            result, lse = result
            scale = self.head_dim**-0.5
            record = AttentionRecord(q.detach(), k.detach(), lse, mask, self.score_mod, scale)
            records.append(record)
        return self.o_proj(result.transpose(1, 2).flatten(2))
