"""Rollout against an independent float64 computation, head descriptors on maps whose pattern
is known, pooling, and capture against output_attentions and Hugging Face's eager attention."""

import numpy as np
import pytest
import torch

import atenea
from atenea.inspect import capture, describe_head, pool_map, rollout
from atenea.models import EncoderConfig, EncoderModel


def rollout_by_hand(maps: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema, written out with numpy loops: A_l = mean_h + I, row-normalised,
    R = A_L ... A_1."""
    layers, heads, length, _ = maps.shape
    result = np.eye(length)
    for layer in range(layers):
        a = np.zeros((length, length))
        for h in range(heads):
            a += maps[layer, h] / heads
        a += np.eye(length)
        for i in range(length):
            a[i] /= a[i].sum()
        result = a @ result
    return result


def test_rollout_matches_an_independent_computation():
    torch.manual_seed(0)
    model = EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=50, num_layers=3))
    ids = torch.randint(0, 50, (1, 9))
    maps = capture(model.eval(), ids)  # (3, 2, 9, 9)
    got = rollout(maps)
    want = rollout_by_hand(maps.double().numpy())
    assert np.allclose(got.numpy(), want, atol=1e-12)
    assert torch.allclose(got.sum(-1), torch.ones(9, dtype=torch.float64))


@pytest.mark.parametrize(
    "options, pattern",
    [
        (dict(kind="bogus"), "kind: expected 'self', 'cross' or 'encoder', got 'bogus'"),
        (dict(example=3), "example: expected an index into the batch of 2, got 3"),
        (dict(layers=[]), r"layers: expected None \(all\) or at least one layer index"),
        (dict(layers=[5]), r"layer: expected 0..1, got 5"),
    ],
)
def test_capture_names_a_bad_argument(options, pattern):
    model = EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=50)).eval()
    with pytest.raises(ValueError, match=pattern):
        capture(model, torch.randint(5, 40, (2, 5)), **options)
    assert capture(model, torch.randint(5, 40, (2, 5)), example=-1).shape == (2, 2, 5, 5)


def test_capture_equals_output_attentions_and_hf_eager(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    hf = BertModel(
        BertConfig(
            vocab_size=97,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    hf.save_pretrained(tmp_path)
    hf = BertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    model, _ = atenea.load_pretrained(tmp_path)
    ids = torch.randint(5, 97, (1, 11))
    maps = capture(model, ids)
    with torch.no_grad():
        theirs = hf(input_ids=ids, output_attentions=True).attentions
        ours = model(ids, output_attentions=True).attentions
    for layer in range(2):
        assert torch.allclose(maps[layer], ours[layer][0], atol=1e-6)
        assert torch.allclose(maps[layer], theirs[layer][0], atol=1e-5)
    # a subset of rows and heads is the same slice
    part = capture(model, ids, layers=[1], heads=[2, 0], rows=[10, 3])
    assert torch.allclose(part[0], maps[1][[2, 0]][:, [10, 3]], atol=1e-6)


def _map(kind: str, length: int = 8) -> torch.Tensor:
    w = torch.zeros(length, length)
    for i in range(length):
        j = {"previous": max(i - 1, 0), "next": min(i + 1, length - 1), "self": i, "first": 0}[kind]
        w[i, j] = 1.0
    return w


@pytest.mark.parametrize("kind", ["previous", "next", "self", "first"])
def test_descriptors_name_known_patterns(kind):
    d = describe_head(_map(kind), special=[False] * 8, layer=2, head=5)
    assert d.pattern == kind and d.text.startswith("L2 H5 ")
    assert d.entropy < 0.05


def test_descriptors_special_and_broad():
    length = 8
    special = [True] + [False] * 6 + [True]
    to_cls = torch.zeros(length, length)
    to_cls[:, 0], to_cls[:, -1] = 0.6, 0.4
    assert describe_head(to_cls, special).pattern == "special"
    uniform = torch.full((length, length), 1 / length)
    d = describe_head(uniform, [False] * length)
    assert d.pattern == "broad" and d.entropy > 0.99
    assert (
        abs(d.mean_distance - (torch.arange(8.0)[:, None] - torch.arange(8.0)).abs().mean()) < 1e-6
    )


def test_pool_map_keeps_row_means():
    torch.manual_seed(1)
    w = torch.softmax(torch.randn(2, 3, 300, 300), -1)
    pooled = pool_map(w, 100)
    assert pooled.shape == (2, 3, 100, 100)
    assert torch.allclose(pooled[..., 0, 0], w[..., :3, :3].mean((-1, -2)))
    assert pool_map(w[..., :50, :50], 100).shape[-1] == 50


def test_pool_map_of_a_ragged_length_averages_only_real_tokens():
    """7 tokens in blocks of 3: the last block holds one token, and its cells are that token's
    weights, not diluted by the padding that makes the blocks even."""
    w = torch.softmax(torch.randn(1, 1, 7, 7, dtype=torch.float64), -1)
    pooled = pool_map(w, 3)
    blocks = [slice(0, 3), slice(3, 6), slice(6, 7)]
    expected = torch.tensor([[w[0, 0, r, c].mean() for c in blocks] for r in blocks])
    torch.testing.assert_close(pooled[0, 0], expected.double())
    with pytest.raises(ValueError, match="size: expected at least 1 cell a side, got 0"):
        pool_map(w, 0)


def test_scan_groups_long_inputs_into_blocks_of_exact_rows():
    from atenea.inspect import describe_heads, record
    from atenea.inspect.analysis import LayerStats
    from atenea.inspect.capture import scan

    torch.manual_seed(2)
    model = EncoderModel(
        EncoderConfig.from_name("bert-tiny", vocab_size=50, max_positions=512)
    ).eval()
    ids = torch.randint(0, 50, (1, 203))
    full = capture(model, ids)  # (2, 2, 203, 203)
    special = [True] + [False] * 201 + [True]
    records = record(model, ids).attention
    # short enough: every weight, exact, and the descriptors of every row
    maps, descriptions, focus_rows, block = scan(
        records, special, size=256, focus=77, rows_per_step=30
    )
    assert block == 1 and torch.allclose(maps, full, atol=1e-6)
    assert torch.allclose(focus_rows, full[:, :, 77], atol=1e-6)
    for got, want in zip(descriptions, describe_heads(full, special)):
        assert got.pattern == want.pattern
        for name in ("entropy", "mean_distance", "previous_share", "special_share"):
            assert abs(getattr(got, name) - getattr(want, name)) < 1e-5
    # long: blocks of 6 tokens; row b = block b's middle token, keys summed per block
    maps, descriptions, _, block = scan(records, special, size=40)
    assert block == 6 and maps.shape == (2, 2, 34, 34)
    middle = (torch.arange(34) * 6 + 3).clamp(max=202)
    keys_summed = torch.nn.functional.pad(full[:, :, middle], (0, 1)).unflatten(-1, (34, 6)).sum(-1)
    assert torch.allclose(maps, keys_summed, atol=1e-6)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 34), atol=1e-5)
    stats = LayerStats(2, special, 203)
    stats.add(full[1][:, middle], middle)
    assert [d.text for d in stats.descriptions(1)] == [d.text for d in descriptions[2:]]


def test_scan_focus_row_with_blocks_is_exact_and_changes_nothing_else():
    from atenea.inspect import record
    from atenea.inspect.capture import scan

    torch.manual_seed(3)
    model = EncoderModel(
        EncoderConfig.from_name("bert-tiny", vocab_size=50, max_positions=512)
    ).eval()
    ids = torch.randint(0, 50, (1, 150))
    full = capture(model, ids)
    records = record(model, ids).attention
    special = [False] * 150
    plain, described, _, block = scan(records, special, size=40)
    focused, described_too, focus_rows, _ = scan(records, special, size=40, focus=100)
    assert block == 4 and torch.equal(plain, focused)
    assert [d.text for d in described] == [d.text for d in described_too]
    assert torch.allclose(focus_rows, full[:, :, 100], atol=1e-6)
