"""The Vision Transformer: Hugging Face parity on the same random weights (logits, hidden
states, attentions; at the training size and at two other sizes through position
interpolation), the patch embedding against a reshape-and-matmul formula, the folder written
back, and bad inputs."""

import json

import pytest
import torch
import transformers

import atenea
from atenea.models import ViTConfig, ViTForImageClassification, ViTModel
from atenea.models.vit import resize_positions
from tests.helpers import max_error
from tests.models.tiny import randomize

TOLERANCE = 1e-4


def hf_vit_config(**overrides) -> transformers.ViTConfig:
    # Every size different: 3 channels, 4-pixel patches on a 20 x 20 image (5 x 5 grid),
    # width 48 in 6 heads, feed-forward 40.
    values = dict(
        image_size=20, patch_size=4, num_channels=3, hidden_size=48, num_hidden_layers=2,
        num_attention_heads=6, intermediate_size=40, attn_implementation="eager",
    )  # fmt: skip
    return transformers.ViTConfig(**{**values, **overrides})


def _pair(hf_model, folder):
    randomize(hf_model).eval()
    hf_model.save_pretrained(folder)
    model, tokenizer = atenea.load_pretrained(folder)
    assert tokenizer is None and not model.training
    return hf_model, model


# (height, width): the training size, then two others the positions are resized for.
SIZES = [(20, 20), (28, 16), (12, 24)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_classifier_matches_transformers(size, tmp_path):
    hf_model, model = _pair(
        transformers.ViTForImageClassification(hf_vit_config(num_labels=7)), tmp_path
    )
    assert type(model) is ViTForImageClassification and model.num_labels == 7
    pixels = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(
            pixels, output_attentions=True, output_hidden_states=True,
            interpolate_pos_encoding=size != (20, 20),
        )  # fmt: skip
        out = model(pixels, output_attentions=True, output_hidden_states=True)
    tokens = 1 + (size[0] // 4) * (size[1] // 4)
    assert out.logits.shape == (2, 7)
    assert max_error(out.logits, expected.logits) < TOLERANCE
    assert len(out.hidden_states) == len(expected.hidden_states) == 3
    for ours, theirs in zip(out.hidden_states, expected.hidden_states):
        assert ours.shape == (2, tokens, 48)
        assert max_error(ours, theirs) < TOLERANCE
    assert len(out.attentions) == len(expected.attentions) == 2
    for ours, theirs in zip(out.attentions, expected.attentions):
        assert ours.shape == (2, 6, tokens, tokens)
        assert max_error(ours, theirs) < TOLERANCE


def test_bare_model_with_pooler_matches_and_round_trips(tmp_path):
    hf_model, model = _pair(transformers.ViTModel(hf_vit_config()), tmp_path / "hf")
    assert type(model) is ViTModel and model.pooler is not None
    pixels = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf_model(pixels)
        out = model(pixels)
    assert max_error(out.last_hidden_state, expected.last_hidden_state) < TOLERANCE
    assert max_error(out.pooled, expected.pooler_output) < TOLERANCE
    # Written back by atenea, read by transformers: the same function.
    atenea.save_pretrained(model, tmp_path / "ours")
    again = transformers.ViTModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert max_error(again(pixels).pooler_output, expected.pooler_output) < TOLERANCE


def test_labels_and_normalisation_survive_a_round_trip(tmp_path):
    config = ViTConfig.from_name("vit-tiny", image_mean=[0.3], image_std=[0.2])
    model = ViTForImageClassification(config, 3, labels=["cat", "dog", "owl"])
    atenea.save_pretrained(model, tmp_path)
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.3] and processor["image_std"] == [0.2]
    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path)
    assert hf.config.id2label == {0: "cat", 1: "dog", 2: "owl"}
    loaded, _ = atenea.load_pretrained(tmp_path)
    assert loaded.labels == ["cat", "dog", "owl"]
    assert loaded.config == config
    pixels = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(pixels).logits, model.eval()(pixels).logits)


def test_patch_embedding_is_a_matrix_product_over_flattened_patches():
    config = ViTConfig(image_size=20, patch_size=4, num_channels=3, dim=10, num_layers=1,
                       num_heads=2, ffn_hidden=8)  # fmt: skip
    model = ViTModel(config)
    images = torch.randn(2, 3, 12, 20, dtype=torch.float64)
    model = model.double()
    # (B, C, H, W) -> (B, rows, p, cols, p, C)... -> (B, rows * cols, C * p * p), row by row,
    # each patch flattened channel-major as the convolution's weight is.
    b, c, p = 2, 3, 4
    patches = images.reshape(b, c, 3, p, 5, p).permute(0, 2, 4, 1, 3, 5).reshape(b, 15, c * p * p)
    weight = model.patch_embedding.weight.reshape(10, -1)  # (dim, C * p * p)
    expected = patches @ weight.T + model.patch_embedding.bias
    embedded = model.embed(images)
    assert embedded.shape == (2, 16, 10)
    positions = model.positions((3, 5))[0, 1:]
    assert max_error(embedded[:, 1:] - positions, expected) < 1e-12


def test_positions_are_kept_at_the_training_grid_and_resized_elsewhere():
    table = torch.arange(2 * 9 * 4, dtype=torch.float64).reshape(9, 8)
    assert torch.allclose(resize_positions(table, (3, 3)), table)
    model = ViTModel(ViTConfig.from_name("vit-tiny"))
    assert model.positions((7, 7)) is model.position_embedding
    assert model.positions((4, 9)).shape == (1, 1 + 36, 64)


def test_bad_pixels_are_one_line_errors():
    model = ViTModel(ViTConfig.from_name("vit-tiny"))
    with pytest.raises(ValueError, match=r"pixel_values: expected shape \(B, 1, H, W\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="multiples of the patch size 4, got 30 x 28"):
        model(torch.randn(2, 1, 30, 28))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image_mean: expected 3 values"):
        ViTConfig(image_mean=[0.5])


def test_attentions_from_the_fast_path_equal_the_reference_backend():
    model = ViTForImageClassification(ViTConfig.from_name("vit-tiny"), 10).eval()
    pixels = torch.randn(2, 1, 28, 28)
    out = model(pixels, output_attentions=True)
    for layer in model.vit.layers:
        layer.attention.backend = "reference"
    reference = model(pixels, output_attentions=True)
    assert max_error(out.logits, reference.logits) < 1e-5
    for ours, theirs in zip(out.attentions, reference.attentions):
        assert torch.allclose(ours.sum(-1), torch.ones(()))
        assert max_error(ours, theirs) < 1e-5


def test_a_single_number_normalisation_and_a_refused_config_from_transformers(tmp_path):
    """transformers' image processor takes one mean for every channel (atenea's list() of it
    was a TypeError); a config ViTConfig refuses (a patch that does not tile the image, which
    transformers runs) is a CheckpointError naming config.json, not a bare ValueError."""
    from atenea.models import CheckpointError

    hf_model, model = _pair(transformers.ViTModel(hf_vit_config()), tmp_path / "plain")
    (tmp_path / "plain" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": 0.25, "image_std": 0.5, "do_normalize": True})
    )
    loaded, _ = atenea.load_pretrained(tmp_path / "plain")
    assert loaded.config.image_mean == [0.25] * 3 and loaded.config.image_std == [0.5] * 3
    transformers.ViTModel(hf_vit_config(patch_size=7)).save_pretrained(tmp_path / "seven")
    with pytest.raises(CheckpointError, match="config.json: image_size: 20 is not a multiple "
                                              "of patch_size 7"):  # fmt: skip
        atenea.load_pretrained(tmp_path / "seven")
