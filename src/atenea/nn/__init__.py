"""Modules built on the attention core: multi-head / cross / additive attention, positions,
norms, feed-forward, the transformer block, the KV cache, and ``Linear`` (``nn.Linear`` on the
CPU's fastest kernel for its shape)."""

from atenea.nn.additive import AdditiveAttention
from atenea.nn.alignment import Alignment
from atenea.nn.attention import AttentionRecord, MultiHeadAttention
from atenea.nn.block import BlockConfig, TransformerBlock
from atenea.nn.cache import Cache, KVCache, MemoryCache, Write
from atenea.nn.feedforward import FeedForward
from atenea.nn.linear import Linear
from atenea.nn.norms import LayerNorm, RMSNorm
from atenea.nn.positions import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    positions_from_mask,
)

__all__ = [
    "AdditiveAttention",
    "Alignment",
    "AttentionRecord",
    "BlockConfig",
    "Cache",
    "FeedForward",
    "KVCache",
    "LayerNorm",
    "MemoryCache",
    "LearnedPositions",
    "Linear",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "TransformerBlock",
    "Write",
    "positions_from_mask",
]
