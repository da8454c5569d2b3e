"""Positions: RoPE in both layouts against a float64 rotation written out here, Llama-3
frequency scaling against transformers' own, partial rotary; sinusoids; learned positions;
positions of padded batches."""

import math

import pytest
import torch

from atenea.nn import LearnedPositions, RotaryEmbedding, SinusoidalPositions, positions_from_mask
from atenea.nn.positions import llama3_scaled_frequencies
from tests.helpers import max_error


def rotation_reference(x, positions, layout, rotary_dim, base=10000.0, inv_freq=None):
    """Rotate pair ``i`` of every row of ``x (B, H, L, D)`` by ``positions[b, l] * theta_i``
    with an explicit 2x2 rotation per pair, in float64. Pair ``i`` is dimensions
    ``(i, i + rotary_dim / 2)`` ("half") or ``(2i, 2i + 1)`` ("interleaved"); dimensions from
    ``rotary_dim`` on are left alone."""
    x = x.double()
    out = x.clone()
    half = rotary_dim // 2
    if inv_freq is None:
        inv_freq = [base ** (-2 * i / rotary_dim) for i in range(half)]
    for i in range(half):
        a, b = (i, i + half) if layout == "half" else (2 * i, 2 * i + 1)
        angle = positions.double()[:, None, :] * float(inv_freq[i])  # (B, 1, L)
        cos, sin = torch.cos(angle), torch.sin(angle)
        out[..., a] = x[..., a] * cos - x[..., b] * sin
        out[..., b] = x[..., a] * sin + x[..., b] * cos
    return out


def random_positions(batch=2, length=7, high=50, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (batch, length), generator=generator)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [None, 6])
def test_rotary_matches_explicit_rotation(layout, rotary_dim):
    head_dim = 10
    rope = RotaryEmbedding(head_dim, base=100.0, layout=layout, rotary_dim=rotary_dim)
    x = torch.randn(2, 3, 7, head_dim)  # B, H, L, D all different
    positions = random_positions()  # every row its own positions
    actual = rope(x, positions)
    expected = rotation_reference(x, positions, layout, rotary_dim or head_dim, base=100.0)
    assert actual.shape == x.shape and actual.dtype == x.dtype
    assert max_error(actual, expected) < 1e-5
    if rotary_dim:
        assert torch.equal(actual[..., rotary_dim:], x[..., rotary_dim:])  # the rest untouched
    # the rotation is real: not the identity, and a rotation keeps each pair's length
    assert max_error(actual, x) > 0.1
    assert max_error(actual.norm(dim=-1), x.norm(dim=-1)) < 1e-5


def test_rotary_layouts_differ_and_are_a_permutation_apart():
    """The same weights need the same layout: the layouts differ, but permuting dimensions
    (2i, 2i+1) -> (i, i + D/2) turns one into the other."""
    head_dim = 8
    x = torch.randn(2, 3, 7, head_dim)
    positions = random_positions()
    half = RotaryEmbedding(head_dim, layout="half")(x, positions)
    interleaved = RotaryEmbedding(head_dim, layout="interleaved")(x, positions)
    assert max_error(half, interleaved) > 0.1
    to_half = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    assert (
        max_error(interleaved[..., to_half], RotaryEmbedding(head_dim)(x[..., to_half], positions))
        < 1e-6
    )


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rotary_scores_depend_only_on_distance(layout):
    rope = RotaryEmbedding(12, layout=layout)
    q, k = torch.randn(1, 1, 1, 12), torch.randn(1, 1, 1, 12)

    def score(pq, pk):
        return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum()

    assert abs(score(5, 2) - score(33, 30)) < 1e-4
    assert abs(score(5, 2) - score(2, 5)) > 1e-3  # direction matters


def test_rotary_positions_of_one_row_broadcast():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)
    positions = torch.tensor([4, 0, 9, 2, 7])
    assert torch.equal(rope(x, positions), rope(x, positions.expand(2, 5)))


def test_linear_scaling_divides_the_positions():
    scaled = RotaryEmbedding(8, scaling={"rope_type": "linear", "factor": 4.0})
    x = torch.randn(2, 3, 5, 8)
    positions = torch.tensor([[0, 4, 8, 12, 40], [4, 8, 16, 20, 28]])
    expected = rotation_reference(x, positions / 4, "half", 8)
    assert max_error(scaled(x, positions), expected) < 1e-5


LLAMA31 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def test_llama3_frequencies_match_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    head_dim, theta = 64, 500000.0
    config = LlamaConfig(
        hidden_size=head_dim * 4,
        num_attention_heads=4,
        rope_parameters={**LLAMA31, "rope_theta": theta},
    )
    expected, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    assert attention_factor == 1.0
    rope = RotaryEmbedding(head_dim, base=theta, scaling=LLAMA31)
    assert rope.inv_freq.shape == expected.shape == (head_dim // 2,)
    assert max_error(rope.inv_freq, expected) / expected.max() < 1e-6
    plain = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ratio = plain / rope.inv_freq.double()
    # the test covers all three bands: kept (ratio 1), slowed by `factor`, interpolated
    assert (ratio - 1).abs().min() < 1e-6
    assert (ratio - 8).abs().min() < 1e-4
    assert ((ratio > 1.01) & (ratio < 7.99)).any()


def test_llama3_frequencies_match_the_formula():
    """Meta's reference: wavelength < original/high kept, > original/low divided by factor,
    smooth interpolation in between (written here per frequency, in float64)."""
    theta, head_dim = 10000.0, 32
    scaling = dict(LLAMA31, original_max_position_embeddings=64, factor=4.0)
    inv_freq = [theta ** (-2 * i / head_dim) for i in range(head_dim // 2)]
    expected = []
    for f in inv_freq:
        wavelength = 2 * math.pi / f
        if wavelength < 64 / 4.0:
            expected.append(f)
        elif wavelength > 64 / 1.0:
            expected.append(f / 4.0)
        else:
            smooth = (64 / wavelength - 1.0) / (4.0 - 1.0)
            expected.append((1 - smooth) * f / 4.0 + smooth * f)
    expected = torch.tensor(expected, dtype=torch.float64)
    actual = llama3_scaled_frequencies(
        torch.tensor(inv_freq, dtype=torch.float64), 4.0, 1.0, 4.0, 64
    )
    assert max_error(actual, expected) < 1e-12
    rope = RotaryEmbedding(head_dim, base=theta, scaling=scaling)
    x = torch.randn(2, 3, 7, head_dim)
    positions = random_positions(high=200)
    reference = rotation_reference(x, positions, "half", head_dim, inv_freq=expected.tolist())
    assert max_error(rope(x, positions), reference) < 1e-4


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(layout="neox"), "layout must be 'half' or 'interleaved'"),
        (dict(rotary_dim=5), "rotary_dim must be even"),
        (dict(rotary_dim=12), r"rotary_dim must be even and in \(0, head_dim=8\]"),
        (dict(scaling={"rope_type": "yarn", "factor": 2.0}), "unknown scaling type 'yarn'"),
    ],
)
def test_rotary_rejects_bad_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RotaryEmbedding(8, **kwargs)


@pytest.mark.parametrize("dim", [6, 7])
def test_sinusoidal_table(dim):
    positions = torch.tensor([[0, 3, 11], [5, 1, 2]])
    table = SinusoidalPositions(dim)(positions)
    assert table.shape == (2, 3, dim)
    for b in range(2):
        for j in range(3):
            p = float(positions[b, j])
            for d in range(dim):
                angle = p / 10000 ** ((d - d % 2) / dim)
                expected = math.sin(angle) if d % 2 == 0 else math.cos(angle)
                assert abs(float(table[b, j, d]) - expected) < 1e-6


def test_learned_positions_look_up_and_refuse_too_long():
    positions = LearnedPositions(5, 3)
    ids = torch.tensor([[0, 4, 2]])
    assert torch.equal(positions(ids), positions.table.weight[ids])
    with pytest.raises(ValueError, match=r"learned positions 0\.\.4, got position 5"):
        positions(torch.tensor([[5]]))


def test_positions_from_mask():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    expected = torch.tensor([[0, 1, 2, 3, 0, 0], [0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])
    assert torch.equal(positions_from_mask(mask), expected)
    assert torch.equal(positions_from_mask(mask, start=3), (expected + 3) * mask)
    # one start per row (a cache's next positions): added along each row, not across rows
    starts = torch.tensor([10, 20, 30])
    assert torch.equal(positions_from_mask(mask, start=starts), (expected + starts[:, None]) * mask)


def test_rotary_frequencies_are_those_transformers_computes_bit_for_bit():
    """Llama's float32 frequencies, not the float64 ones rounded: 18 of 64 were one ulp off at
    theta 5e5, which turned q by 1e-3 more at position 32k."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    head_dim, theta = 128, 500000.0
    for scaling in (None, LLAMA31):
        parameters = {**(scaling or {"rope_type": "default"}), "rope_theta": theta}
        config = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4,
                             rope_parameters=parameters)  # fmt: skip
        expected = LlamaRotaryEmbedding(config).inv_freq
        assert torch.equal(RotaryEmbedding(head_dim, base=theta, scaling=scaling).inv_freq32,
                           expected)  # fmt: skip


def test_learned_positions_refuse_a_negative_one():
    with pytest.raises(ValueError, match="positions: a position is an index >= 0, got -1"):
        LearnedPositions(5, 3)(torch.tensor([[0, -1]]))


def test_a_float64_model_computes_its_positions_and_norms_in_float64():
    """Rotary, sinusoidal and RMSNorm work in float32 for lower precisions (as the checkpoints'
    code does) but in float64 for a float64 model: float32 sines differ between a CPU and a GPU
    in the last bit, which a float64 model would carry into every result (seen on an H200:
    1e-7 between devices). Against float64 formulas written out, to 1e-12."""
    from atenea.nn.norms import RMSNorm

    rope = RotaryEmbedding(16, base=10000.0).double()  # as model.double() leaves it
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64)
    positions = random_positions(high=5000)  # large angles: float32 would be off by 1e-4
    expected = rotation_reference(x, positions, "half", 16)  # base^(-2i/d), written out
    assert max_error(rope(x, positions), expected) < 1e-12
    table = SinusoidalPositions(8)(positions, torch.float64)
    angle = positions.double()[..., None] * 10000.0 ** (-torch.arange(0, 8, 2).double() / 8)
    assert table.dtype == torch.float64
    assert max_error(table[..., 0::2], torch.sin(angle)) < 1e-12
    assert SinusoidalPositions(8)(positions).dtype == torch.float32  # the default stays
    norm = RMSNorm(16).double()
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert max_error(norm(x), want) < 1e-12
