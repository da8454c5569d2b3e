"""What the modules refuse, in one line naming it, where they used to compute something else
or fail deep inside: a memory given to a fused q/k/v projection, a rotary embedding for
another head size, zero heads, masks of the wrong shape for additive attention and the
alignment, a cache step's mask without its batch axis."""

import pytest
import torch

from atenea import masks
from atenea.nn import AdditiveAttention, MultiHeadAttention, RotaryEmbedding
from atenea.nn.alignment import Alignment
from atenea.nn.cache import Cache


def test_a_fused_projection_refuses_a_memory_it_would_ignore():
    attention = MultiHeadAttention(16, 4, fused_qkv=True)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with pytest.raises(ValueError, match="fused_qkv is for self-attention; got a memory"):
        attention(x, memory)  # returned attention(x): self-attention, the memory unread


@pytest.mark.parametrize("rotary_head", [4, 8])
def test_a_rotary_embedding_for_another_head_size_is_refused(rotary_head):
    """4 of 8 rotated only half of each head without a word; 8 of 4 failed in _rotate."""
    with pytest.raises(ValueError, match=f"the rotary embedding is for head_dim {rotary_head}, "
                                         f"the heads have {12 - rotary_head}"):  # fmt: skip
        MultiHeadAttention(4 * (12 - rotary_head), 4, rotary=RotaryEmbedding(rotary_head))


@pytest.mark.parametrize("kwargs", [dict(num_heads=0), dict(num_heads=4, num_kv_heads=0)])
def test_zero_heads_are_refused(kwargs):
    with pytest.raises(ValueError, match="num_heads and num_kv_heads must be >= 1"):
        MultiHeadAttention(16, **kwargs)


@pytest.mark.parametrize(
    "mask, pattern",
    [
        (torch.ones(2, 1, 1, 9, dtype=torch.bool), "mask"),  # 9 keys for 7: was cut to 7
        (masks.key_padding(torch.tensor([3, 4, 5])), "carries a batch of 3"),
    ],
)
def test_additive_attention_checks_its_mask_as_attention_does(mask, pattern):
    module = AdditiveAttention(query_dim=6, key_dim=5, hidden_dim=4)
    with pytest.raises(ValueError, match=pattern):
        module(torch.randn(2, 3, 6), torch.randn(2, 7, 5), mask=mask)


def test_the_alignment_checks_its_mask():
    align = Alignment(query_dim=6, key_dim=5, hidden_dim=4)
    with pytest.raises(ValueError, match=r"mask: expected \(B, S\) = \(2, 7\), one flag per "
                                         r"source token, got \(2, 8\)"):  # fmt: skip
        align(torch.randn(2, 6), torch.randn(2, 7, 5), torch.ones(2, 8, dtype=torch.bool))


def test_a_cache_step_needs_the_batch_axis():
    from atenea.nn import KVCache

    cache = Cache([KVCache(2, 1, 8, 4, 4, torch.float32, "cpu")])
    with pytest.raises(ValueError, match=r"cache: the new tokens' mask must be \(B, L\)"):
        cache.advance(torch.ones(3, dtype=torch.long))
