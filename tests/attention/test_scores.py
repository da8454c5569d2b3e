"""Score modifiers: ALiBi slopes, T5 buckets against Hugging Face's own code, application on
every backend, composition order."""

import math

import pytest
import torch

import atenea
from atenea import masks, scores
from tests.helpers import make_qkv, max_error, reference, run_blocks


@pytest.mark.parametrize("num_heads", [1, 2, 3, 5, 6, 8, 12, 16, 20, 32])
def test_alibi_slopes_match_bloom(num_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    # BLOOM's alibi is slope[h] * position for a row of ones: read the slopes at position 1
    alibi = build_alibi_tensor(torch.ones(1, 3), num_heads, torch.float32)  # (H, 1, 3)
    assert torch.allclose(scores.alibi_slopes(num_heads), alibi[:, 0, 1], rtol=1e-6)


def test_alibi_slopes_paper_values():
    # power of two: 2^(-8/n * i); n = 8 gives 1/2, 1/4, ..., 1/256
    assert torch.allclose(scores.alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # not a power of two: the 4 slopes of n=4, then every other slope of n=8
    six = scores.alibi_slopes(6)
    assert torch.allclose(six[:4], scores.alibi_slopes(4))
    assert torch.allclose(six[4:], scores.alibi_slopes(8)[0::2][:2])


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 20), (16, 64)])
def test_relative_buckets_match_t5(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 301)
    theirs = T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    ours = scores.relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, theirs)


def _manual_scores(q, k, scale):
    return (q @ k.repeat_interleave(q.shape[1] // k.shape[1], 1).transpose(-2, -1)) * scale


def test_alibi_is_added_as_slope_times_distance():
    q, k, v = make_qkv(1, 4, 2, 5, 7, 8)
    _, weights = reference(q, k, v, score_mod=scores.alibi(4), return_weights=True)
    s = _manual_scores(q, k, 8**-0.5)
    q_pos = torch.arange(5).view(5, 1) + 2  # bottom-right: the 5 queries are positions 2..6
    distance = torch.arange(7).view(1, 7) - q_pos
    s = s + scores.alibi_slopes(4).double().view(1, 4, 1, 1) * distance
    assert max_error(weights, torch.softmax(s, -1)) < 1e-12


def test_softcap_bounds_scores():
    cap = scores.softcap(3.0)
    s = torch.linspace(-100, 100, 11)
    capped = cap(s, None, None, None, None)
    assert (capped.abs() <= 3.0).all() and capped.abs().max() > 2.9
    assert torch.allclose(capped, 3.0 * torch.tanh(s / 3.0))


def test_compose_applies_in_order():
    alibi, cap = scores.alibi(2), scores.softcap(0.5)
    q, k, v = make_qkv(1, 2, 2, 6, 6, 4, scale=3.0)
    _, w1 = reference(q, k, v, score_mod=scores.compose(alibi, cap), return_weights=True)
    _, w2 = reference(q, k, v, score_mod=alibi.then(cap), return_weights=True)
    _, w3 = reference(q, k, v, score_mod=scores.compose(cap, alibi), return_weights=True)
    assert torch.equal(w1, w2)
    assert max_error(w1, w3) > 1e-3  # order matters
    bias = scores.relative_bias(2)
    assert set(scores.compose(bias, cap).parameters()) == set(bias.parameters())


def test_plain_callable_score_mod():
    def tilt(score, batch, head, q_pos, k_pos):  # FlexAttention-style function
        return score + 0.1 * head * (k_pos - q_pos) - 0.2 * batch

    q, k, v = make_qkv()
    expected = reference(q, k, v, score_mod=tilt, mask=masks.causal())
    for out in (
        atenea.attention(q, k, v, score_mod=tilt, mask=masks.causal(), backend="blocks"),
        run_blocks(q, k, v, score_mod=tilt, mask=masks.causal(), tiles=(4, 5))[0],
    ):
        assert max_error(out, expected) < 1e-12


@pytest.mark.parametrize("mod_name", ["alibi", "alibi_symmetric", "softcap", "relative_bias"])
@pytest.mark.parametrize(
    "mask", [None, masks.causal(), masks.sliding_window(5)], ids=["none", "causal", "window"]
)
def test_score_mods_on_blocks_match_reference(mod_name, mask):
    mod = {
        "alibi": scores.alibi(6),
        "alibi_symmetric": scores.alibi(6, symmetric=True),
        "softcap": scores.softcap(2.0),
        "relative_bias": scores.relative_bias(6, num_buckets=16, max_distance=40).double(),
    }[mod_name]
    q, k, v = make_qkv(2, 6, 3, 150, 171, 16, scale=2.0)
    expected = reference(q, k, v, score_mod=mod, mask=mask)
    for out in (
        atenea.attention(q, k, v, score_mod=mod, mask=mask),
        run_blocks(q, k, v, score_mod=mod, mask=mask, tiles=(32, 16))[0],
    ):
        assert max_error(out, expected) < 1e-12


def test_score_mod_never_sees_more_than_a_segment():
    """On the blocks path a score modifier is called on tiles, never on an Lq x Lk block."""
    shapes = []

    def spy(score, batch, head, q_pos, k_pos):
        shapes.append(tuple(score.shape))
        return score

    q, k, v = make_qkv(1, 2, 2, 1000, 1000, 8, dtype=torch.float32)
    atenea.attention(q, k, v, score_mod=spy, mask=masks.sliding_window(100))
    assert shapes and max(s[2] * s[3] for s in shapes) <= 128 * 1024
    assert all(math.prod(s) < 1000 * 1000 for s in shapes)


def test_score_mod_errors():
    with pytest.raises(ValueError, match="alibi: num_heads"):
        scores.alibi(0)
    with pytest.raises(ValueError, match="softcap: cap"):
        scores.softcap(-1.0)
    with pytest.raises(TypeError, match="compose: every modifier must be callable"):
        scores.compose(scores.softcap(1.0), 3)


@pytest.mark.parametrize(
    "num_buckets, max_distance, bidirectional",
    [(32, 16, False), (2, 1, True), (3, 1, True), (32, 8, True)],
)
def test_relative_bias_refuses_buckets_t5s_formula_cannot_number(
    num_buckets, max_distance, bidirectional
):
    """No exact bucket (a division by zero), or max_distance at the last exact one (a division
    by log 1): the buckets were IndexErrors, or huge negative numbers, inside attention."""
    with pytest.raises(ValueError, match="relative_bias: need num_heads >= 1, num_buckets >= "):
        scores.relative_bias(2, num_buckets, max_distance, bidirectional)
    scores.relative_bias(2, num_buckets=8, max_distance=5, bidirectional=True)  # 2 exact, then log


@pytest.mark.parametrize(
    "mod, name", [(scores.alibi(2), "alibi"), (scores.relative_bias(2), "relative_bias")]
)
@pytest.mark.parametrize("backend", ["reference", "blocks", "auto"])
def test_a_modifier_with_fewer_heads_than_the_queries_is_named(mod, name, backend):
    q = torch.randn(1, 4, 8, 16)
    with pytest.raises(ValueError, match=f"score_mod: {name} has 2 heads, the queries 4; make "
                                         f"it with num_heads=4"):  # fmt: skip
        atenea.attention(q, q, q, score_mod=scores.compose(scores.softcap(5.0), mod),
                         backend=backend)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_alibi_adds_its_bias_in_float32_whatever_the_scores_dtype(dtype):
    """FlexAttention hands a modifier a score of the inputs' dtype: a bias cast to it is rounded
    (slope x distance, and distances past 256 in bf16)."""
    score = torch.zeros(1, 2, 1, 1, dtype=dtype)
    out = scores.alibi(9)(score, None, torch.tensor([0, 8]).view(1, 2, 1, 1),
                          torch.tensor(700).view(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))  # fmt: skip
    expected = -700 * scores.alibi_slopes(9)[[0, 8]].double()
    torch.testing.assert_close(out.double().flatten(), expected, rtol=1e-6, atol=0)
