"""The modules of ``atenea.nn`` against the textbook formulas written out here in float64:
multi-head / grouped-query / cross attention, additive attention, norms, feed-forward, the
pre- and post-norm block; and gradients reaching every parameter."""

import pytest
import torch
import torch.nn.functional as F

from atenea import masks
from atenea.nn import (
    AdditiveAttention,
    BlockConfig,
    FeedForward,
    KVCache,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
    TransformerBlock,
    Write,
)
from tests.helpers import max_error

# batch 2, length 7, memory length 9, width 15, 3 heads of 5, memory width 11: all different
B, L, S, DIM, HEADS, MEM_DIM = 2, 7, 9, 15, 3, 11


def double(module):
    return module.double().eval()


def mha_reference(mha, x, memory=None, allowed=None):
    """softmax(q k^T / sqrt(d)) v per head, from the module's projection weights; ``allowed``
    a boolean ``(B, Lq, Lk)`` (True = may attend)."""
    h, hkv, d = mha.num_heads, mha.num_kv_heads, mha.head_dim
    if mha.fused_qkv:
        w = mha.qkv_proj.weight.split([h * d, hkv * d, hkv * d])
        b = mha.qkv_proj.bias.split([h * d, hkv * d, hkv * d])
        q, k, v = (F.linear(x, wi, bi) for wi, bi in zip(w, b))
    else:
        source = x if memory is None else memory
        q = mha.q_proj(x)
        k, v = mha.k_proj(source), mha.v_proj(source)
    q = q.unflatten(-1, (h, d)).transpose(1, 2)  # (B, H, Lq, d)
    k = k.unflatten(-1, (hkv, d)).transpose(1, 2).repeat_interleave(h // hkv, 1)
    v = v.unflatten(-1, (hkv, d)).transpose(1, 2).repeat_interleave(h // hkv, 1)
    scores = q @ k.transpose(-1, -2) / d**0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    out = torch.softmax(scores, -1) @ v  # (B, H, Lq, d)
    return mha.o_proj(out.transpose(1, 2).flatten(2))


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# -- multi-head attention ------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads", [3, 1])
@pytest.mark.parametrize("fused", [False, True])
def test_self_attention_matches_formula(kv_heads, fused):
    mha = double(MultiHeadAttention(DIM, HEADS, num_kv_heads=kv_heads, fused_qkv=fused))
    x = rand(B, L, DIM)
    causal = torch.ones(L, L, dtype=torch.bool).tril().expand(B, L, L)
    out = mha(x, mask=masks.causal())
    assert out.shape == (B, L, DIM)
    assert max_error(out, mha_reference(mha, x, allowed=causal)) < 1e-12
    assert max_error(mha(x), mha_reference(mha, x)) < 1e-12


def test_cross_attention_matches_formula_and_uses_the_memory():
    mha = double(MultiHeadAttention(DIM, HEADS, memory_dim=MEM_DIM))
    x, memory = rand(B, L, DIM), rand(B, S, MEM_DIM)
    lengths = torch.tensor([S, 4])
    allowed = (torch.arange(S) < lengths[:, None])[:, None, :].expand(B, L, S)
    padding = masks.key_padding(lengths)
    out = mha(x, memory, mask=padding)
    assert out.shape == (B, L, DIM)
    assert max_error(out, mha_reference(mha, x, memory, allowed)) < 1e-12
    # the memory matters ...
    changed = memory.clone()
    changed[:, 1] += 1.0
    assert max_error(mha(x, changed, mask=padding), out) > 1e-3
    # ... except where it is padding
    changed = memory.clone()
    changed[1, 4:] = 100.0
    assert max_error(mha(x, changed, mask=padding), out) == 0


def test_fused_and_separate_projections_agree_with_copied_weights():
    separate = double(MultiHeadAttention(DIM, HEADS, num_kv_heads=1, head_dim=4))
    fused = double(MultiHeadAttention(DIM, HEADS, num_kv_heads=1, head_dim=4, fused_qkv=True))
    assert fused.qkv_proj.weight.shape == (3 * 4 + 2 * 4, DIM)
    with torch.no_grad():
        parts = (separate.q_proj, separate.k_proj, separate.v_proj)
        fused.qkv_proj.weight.copy_(torch.cat([p.weight for p in parts]))
        fused.qkv_proj.bias.copy_(torch.cat([p.bias for p in parts]))
        fused.o_proj.load_state_dict(separate.o_proj.state_dict())
    x = rand(B, L, DIM)
    rope = RotaryEmbedding(4)
    separate.rotary = fused.rotary = rope
    positions = torch.arange(L).expand(B, L)
    expected = separate(x, mask=masks.causal(), positions=positions)
    assert max_error(fused(x, mask=masks.causal(), positions=positions), expected) < 1e-12


def test_grouped_query_equals_mha_with_repeated_kv_projections():
    group, kv_heads, head_dim = 3, 2, 4
    gqa = double(
        MultiHeadAttention(DIM, kv_heads * group, num_kv_heads=kv_heads, head_dim=head_dim)
    )
    mha = double(MultiHeadAttention(DIM, kv_heads * group, head_dim=head_dim))
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.o_proj.load_state_dict(gqa.o_proj.state_dict())
        for name in ("k_proj", "v_proj"):
            small, big = getattr(gqa, name), getattr(mha, name)
            big.weight.copy_(
                small.weight.unflatten(0, (kv_heads, head_dim))
                .repeat_interleave(group, 0)
                .flatten(0, 1)
            )
            big.bias.copy_(
                small.bias.unflatten(0, (kv_heads, head_dim)).repeat_interleave(group, 0).flatten()
            )
    x = rand(B, L, DIM)
    expected = mha(x, mask=masks.causal())
    assert max_error(gqa(x, mask=masks.causal()), expected) < 1e-12
    # and with plain (tiled) k/v instead of interleaved, the heads are paired wrongly
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            small, big = getattr(gqa, name), getattr(mha, name)
            big.weight.copy_(
                small.weight.unflatten(0, (kv_heads, head_dim)).repeat(group, 1, 1).flatten(0, 1)
            )
    assert max_error(gqa(x, mask=masks.causal()), mha(x, mask=masks.causal())) > 1e-3


def test_attention_record_rebuilds_the_weights():
    mha = double(MultiHeadAttention(DIM, HEADS, num_kv_heads=1))
    x = rand(B, L, DIM)
    record = []
    mha(x, mask=masks.causal(), records=record)
    assert len(record) == 1
    (r,) = record
    q = mha.q_proj(x).unflatten(-1, (HEADS, 5)).transpose(1, 2)
    k = mha.k_proj(x).unflatten(-1, (1, 5)).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / 5**0.5).masked_fill(
        ~torch.ones(L, L).bool().tril(), float("-inf")
    )
    expected = torch.softmax(scores, -1)
    assert r.weights().shape == (B, HEADS, L, L)
    assert max_error(r.weights(), expected) < 1e-6
    assert max_error(r.weights(rows=[5, 2], heads=2), expected[:, 2:3][:, :, [5, 2]]) < 1e-6


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(dim=16, num_heads=3), "dim 16 is not divisible by num_heads 3; give head_dim"),
        (dict(dim=15, num_heads=3, num_kv_heads=2), "must be a multiple of num_kv_heads 2"),
        (
            dict(dim=15, num_heads=3, fused_qkv=True, memory_dim=7),
            "fused_qkv is for self-attention",
        ),
    ],
)
def test_attention_rejects_bad_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiHeadAttention(**kwargs)


def test_rotary_attention_needs_positions():
    mha = MultiHeadAttention(DIM, HEADS, rotary=RotaryEmbedding(5, rotary_dim=4))
    with pytest.raises(ValueError, match="rotary embedding needs the token positions"):
        mha(torch.randn(B, L, DIM))


# -- additive attention --------------------------------------------------------------------


def additive_reference(module, query, keys, values, allowed=None):
    scores = torch.einsum(
        "h,bqkh->bqk",
        module.score.weight[0],
        torch.tanh(
            (query @ module.query_proj.weight.T)[:, :, None]
            + (keys @ module.key_proj.weight.T + module.key_proj.bias)[:, None]
        ),
    )
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, -1)
    return weights @ values, weights


def test_additive_attention_matches_formula():
    module = double(AdditiveAttention(query_dim=6, key_dim=5, hidden_dim=4))
    query, keys, values = rand(B, 3, 6), rand(B, S, 5), rand(B, S, 7)
    context, weights = module(query, keys, values)
    assert context.shape == (B, 3, 7) and weights.shape == (B, 3, S)
    expected_context, expected_weights = additive_reference(module, query, keys, values)
    assert max_error(weights, expected_weights) < 1e-12
    assert max_error(context, expected_context) < 1e-12
    assert max_error(weights.sum(-1), torch.ones(B, 3)) < 1e-12
    # the weights depend on the keys
    assert max_error(module(query, keys.flip(1), values)[1], weights) > 1e-3
    # a query without its length axis; values default to the keys
    single_context, single_weights = module(query[:, 0], keys)
    assert single_context.shape == (B, 5) and single_weights.shape == (B, S)
    assert max_error(single_weights, weights[:, 0]) < 1e-12
    assert max_error(single_context, single_weights.unsqueeze(1).matmul(keys).squeeze(1)) < 1e-12


def test_additive_attention_respects_the_mask():
    module = double(AdditiveAttention(query_dim=6, key_dim=5, hidden_dim=4))
    query, keys, values = rand(B, 3, 6), rand(B, S, 5), rand(B, S, 7)
    allowed = torch.rand(B, 3, S) > 0.4
    allowed[0, 1] = False  # a query that may attend to nothing
    allowed[1, 2] = True
    context, weights = module(query, keys, values, mask=allowed[:, None])
    assert not torch.isnan(weights).any() and not torch.isnan(context).any()
    assert (weights[~allowed] == 0).all()
    assert (weights[0, 1] == 0).all() and (context[0, 1] == 0).all()
    sums = weights.sum(-1)
    assert max_error(sums[allowed.any(-1)], torch.ones(B * 3 - 1)) < 1e-12
    reference_rows = allowed.any(-1)
    expected_context, expected_weights = additive_reference(module, query, keys, values, allowed)
    assert max_error(weights[reference_rows], expected_weights[reference_rows]) < 1e-12
    assert max_error(context[reference_rows], expected_context[reference_rows]) < 1e-12
    # an atenea mask object works too
    _, padded = module(query, keys, values, mask=masks.key_padding(torch.tensor([S, 3])))
    assert (padded[1, :, 3:] == 0).all() and max_error(padded.sum(-1), torch.ones(B, 3)) < 1e-12


def test_additive_attention_gradients_with_an_empty_row():
    module = AdditiveAttention(query_dim=6, key_dim=5, hidden_dim=4)
    query = torch.randn(B, 3, 6, requires_grad=True)
    keys = torch.randn(B, S, 5, requires_grad=True)
    allowed = torch.ones(B, 1, 3, S, dtype=torch.bool)
    allowed[0, 0, 1] = False
    context, _ = module(query, keys, mask=allowed)
    context.square().sum().backward()
    for tensor in (query, keys, *module.parameters()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


# -- norms and feed-forward ----------------------------------------------------------------


def test_rms_norm_matches_formula_and_keeps_half_precision_accurate():
    norm = RMSNorm(DIM, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(DIM) + 0.5)

    def expected(x):
        x = x.double()
        return x / (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt() * norm.weight.double()

    x = torch.randn(B, L, DIM)
    assert max_error(norm(x), expected(x)) < 1e-5
    # small float16 values: their squares (~1e-6) are subnormal in float16, so a norm computed
    # in float16 would be far off; in float32 only the float16 rounding of the result remains
    small = (x * 1e-3).half()
    out = norm(small)
    assert out.dtype == torch.float32  # float32 weight * normalised float16
    assert max_error(out, expected(small)) < 1e-2
    assert max_error(RMSNorm(DIM).half()(small), expected(small) / norm.weight) < 1e-2


@pytest.mark.parametrize(
    "activation, function",
    [
        ("gelu", lambda t: 0.5 * t * (1 + torch.erf(t / 2**0.5))),
        (
            "gelu_tanh",
            lambda t: 0.5 * t * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (t + 0.044715 * t**3))),
        ),
        ("relu", lambda t: t.clamp(min=0)),
        ("silu", lambda t: t * torch.sigmoid(t)),
    ],
)
def test_feed_forward_matches_formula(activation, function):
    ffn = double(FeedForward(DIM, 13, activation))
    x = rand(B, L, DIM)
    expected = function(x @ ffn.up.weight.T + ffn.up.bias) @ ffn.down.weight.T + ffn.down.bias
    assert max_error(ffn(x), expected) < 1e-12


def test_swiglu_feed_forward_matches_formula():
    ffn = double(FeedForward(DIM, 13, "swiglu", bias=False))
    assert ffn.up.bias is None and ffn.gate.weight.shape == (13, DIM)
    x = rand(B, L, DIM)
    gate = x @ ffn.gate.weight.T
    expected = (gate * torch.sigmoid(gate) * (x @ ffn.up.weight.T)) @ ffn.down.weight.T
    assert max_error(ffn(x), expected) < 1e-12


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation: expected one of .*swiglu, got 'tanh'"):
        FeedForward(DIM, 13, "tanh")


# -- the block -----------------------------------------------------------------------------


def block_config(**overrides):
    values = dict(dim=DIM, num_heads=HEADS, ffn_hidden=13, dropout=0.0, attention_dropout=0.0)
    return BlockConfig(**{**values, **overrides})


def randomize_norms(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_pre_and_post_norm_blocks_follow_their_formulas(norm):
    pre = randomize_norms(double(TransformerBlock(block_config(norm=norm))))
    post = double(TransformerBlock(block_config(norm=norm, norm_position="post")))
    post.load_state_dict(pre.state_dict())  # the same weights
    x = rand(B, L, DIM)
    a, f = pre.attention, pre.feed_forward
    n1, n2 = pre.attention_norm, pre.ffn_norm
    causal = masks.causal()
    h = x + a(n1(x), mask=causal)
    expected_pre = h + f(n2(h))
    h = n1(x + a(x, mask=causal))
    expected_post = n2(h + f(h))
    out_pre, out_post = pre(x, mask=causal), post(x, mask=causal)
    assert max_error(out_pre, expected_pre) < 1e-12
    assert max_error(out_post, expected_post) < 1e-12
    assert max_error(out_pre, out_post) > 1e-2


def test_block_cross_attention_uses_the_memory_but_not_its_padding():
    block = double(TransformerBlock(block_config(cross_attention=True, memory_dim=MEM_DIM)))
    x, memory = rand(B, L, DIM), rand(B, S, MEM_DIM)
    padding = masks.key_padding(torch.tensor([S, 5]))
    out = block(x, mask=masks.causal(), memory=memory, memory_mask=padding)
    assert out.shape == (B, L, DIM)
    h = x + block.attention(block.attention_norm(x), mask=masks.causal())
    h = h + block.cross_attention(block.cross_norm(h), memory, mask=padding)
    assert max_error(out, h + block.feed_forward(block.ffn_norm(h))) < 1e-12
    changed = memory.clone()
    changed[0, 3] -= 2.0
    assert max_error(block(x, mask=masks.causal(), memory=changed, memory_mask=padding), out) > 1e-3
    changed = memory.clone()
    changed[1, 5:] = -50.0
    assert torch.equal(block(x, mask=masks.causal(), memory=changed, memory_mask=padding), out)
    with pytest.raises(ValueError, match="has cross-attention and needs the memory"):
        block(x)


def test_block_config_rejects_unknown_norm_position_and_norm():
    with pytest.raises(ValueError, match="norm_position: expected 'pre' or 'post', got 'middle'"):
        block_config(norm_position="middle")
    with pytest.raises(ValueError, match="norm: expected 'layernorm' or 'rmsnorm', got 'batch'"):
        TransformerBlock(block_config(norm="batch"))


MODULES = {
    "mha_gqa_rotary": lambda: MultiHeadAttention(
        DIM, HEADS, num_kv_heads=1, rotary=RotaryEmbedding(5, rotary_dim=4)
    ),
    "mha_fused": lambda: MultiHeadAttention(DIM, HEADS, fused_qkv=True),
    "cross": lambda: MultiHeadAttention(DIM, HEADS, memory_dim=MEM_DIM),
    "block_pre_swiglu": lambda: TransformerBlock(
        block_config(norm="rmsnorm", activation="swiglu", bias=False, num_kv_heads=1),
        rotary=RotaryEmbedding(5, rotary_dim=4),
    ),
    "block_post_cross": lambda: TransformerBlock(
        block_config(norm_position="post", cross_attention=True, memory_dim=MEM_DIM)
    ),
}


@pytest.mark.parametrize("name", MODULES)
def test_gradients_reach_every_parameter(name):
    module = MODULES[name]()
    x = torch.randn(B, L, DIM, requires_grad=True)
    memory = torch.randn(B, S, MEM_DIM, requires_grad=True)
    positions = torch.arange(L).expand(B, L)
    padding = masks.key_padding(torch.tensor([S, 6]))
    if name == "cross":
        out = module(x, memory, mask=padding)
    elif name == "block_post_cross":
        out = module(x, mask=masks.causal(), memory=memory, memory_mask=padding)
    else:
        out = module(x, mask=masks.causal(), positions=positions)
    assert out.shape == (B, L, DIM)
    (out * torch.randn_like(out)).sum().backward()
    inputs = [x, memory] if "cross" in name else [x]
    for label, tensor in [*module.named_parameters(), *zip(["x", "memory"], inputs)]:
        assert tensor.grad is not None, label
        assert torch.isfinite(tensor.grad).all(), label
        assert tensor.grad.abs().max() > 0, label


# -- KV cache ------------------------------------------------------------------------------


def test_kv_cache_writes_where_told_and_selects_rows():
    cache = KVCache(3, 2, 5, 4, 6, torch.float32, "cpu")
    k, v = torch.randn(3, 2, 3, 4), torch.randn(3, 2, 3, 6)
    keys, values = cache.update(k, v, Write(slice(0, 3), 3))  # eager: the filled part
    assert torch.equal(keys, k) and torch.equal(values, v)
    k2, v2 = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 6)
    keys, values = cache.update(k2, v2, Write(torch.tensor([3]), None))  # whole: every slot
    assert keys.shape == (3, 2, 5, 4) and values.shape == (3, 2, 5, 6)
    assert torch.equal(keys[:, :, :4], torch.cat([k, k2], 2))
    assert torch.equal(values[:, :, :4], torch.cat([v, v2], 2))
    assert (keys[:, :, 4] == 0).all()  # never written
    cache.select(torch.tensor([2, 0]))
    assert torch.equal(cache.keys[:, :, :4], torch.cat([k, k2], 2)[[2, 0]])
