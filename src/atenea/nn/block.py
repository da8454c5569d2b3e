"""The transformer block: attention and a feed-forward network, each wrapped in a residual
connection and a normalisation.

    pre-norm  (GPT-2, Llama, today):   x = x + Attn(Norm(x));   x = x + FFN(Norm(x))
    post-norm (the paper, BERT):       x = Norm(x + Attn(x));   x = Norm(x + FFN(x))

A decoder block of an encoder-decoder model has a cross-attention sub-block between the two,
attending to the encoder's output (the memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from atenea.nn.attention import MultiHeadAttention
from atenea.nn.feedforward import FeedForward
from atenea.nn.norms import make_norm


@dataclass
class BlockConfig:
    """Everything one block needs. Model configs build it (see ``atenea.models``)."""

    dim: int
    num_heads: int
    ffn_hidden: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    activation: str = "gelu"  # gelu | gelu_tanh | relu | silu | swiglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    norm_position: str = "pre"  # pre | post
    bias: bool = True
    fused_qkv: bool = False
    dropout: float = 0.0  # on each sub-block's output, before the residual sum
    attention_dropout: float = 0.0  # on the attention weights
    cross_attention: bool = False
    memory_dim: int | None = None

    def __post_init__(self):
        if self.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position: expected 'pre' or 'post', got {self.norm_position!r}")


class TransformerBlock(nn.Module):
    """One block: self-attention, optional cross-attention, feed-forward. ``x (B, L, dim)``."""

    def __init__(self, config: BlockConfig, rotary=None, score_mod=None):
        super().__init__()
        c = config
        self.config = c

        def attention(**kwargs):
            return MultiHeadAttention(
                c.dim, c.num_heads, num_kv_heads=c.num_kv_heads, head_dim=c.head_dim,
                bias=c.bias, dropout=c.attention_dropout, **kwargs,
            )  # fmt: skip

        self.attention = attention(fused_qkv=c.fused_qkv, rotary=rotary, score_mod=score_mod)
        self.attention_norm = make_norm(c.norm, c.dim, c.norm_eps)
        if c.cross_attention:
            self.cross_attention = attention(memory_dim=c.memory_dim)
            self.cross_norm = make_norm(c.norm, c.dim, c.norm_eps)
        else:
            self.cross_attention = self.cross_norm = None
        self.feed_forward = FeedForward(c.dim, c.ffn_hidden, c.activation, c.bias)
        self.ffn_norm = make_norm(c.norm, c.dim, c.norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def _sublayer(self, x: Tensor, norm: nn.Module, function) -> Tensor:
        """Residual connection around ``function`` with the norm before or after."""
        if self.config.norm_position == "pre":
            return x + self.dropout(function(norm(x)))
        return norm(x + self.dropout(function(x)))

    def forward(
        self,
        x: Tensor,
        *,
        mask=None,
        positions: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask=None,
        cache=None,
        cross_cache=None,
        write=None,
        records: list | None = None,
        cross_records: list | None = None,
    ) -> Tensor:
        """``mask``/``memory_mask``: ``atenea.masks`` masks (True = may attend) for the self- and
        cross-attention; ``cache``/``cross_cache``: this layer's ``KVCache`` and
        ``MemoryCache``, ``write``: where the new keys go (``Cache.advance``); ``records``
        lists collect ``AttentionRecord`` s for inspection."""
        x = self._sublayer(
            x, self.attention_norm,
            lambda h: self.attention(
                h, mask=mask, positions=positions, cache=cache, write=write, records=records
            ),
        )  # fmt: skip
        if self.cross_attention is not None:
            if memory is None:
                raise ValueError("block: this block has cross-attention and needs the memory")
            x = self._sublayer(
                x, self.cross_norm,
                lambda h: self.cross_attention(
                    h, memory, mask=memory_mask, cache=cross_cache, records=cross_records
                ),
            )  # fmt: skip
        return self._sublayer(x, self.ffn_norm, self.feed_forward)
