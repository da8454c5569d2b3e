"""``atenea explain --image``: the explanation's shapes and sums, the near / far measure on
attention built by hand, and the command end to end (pictures written, one-line errors)."""

import numpy as np
import pytest
import torch

import atenea
from atenea.cli.main import main
from atenea.inspect.images import (
    ImageExplanation,
    explain_image,
    mean_patch_distance,
    patch_distances,
)
from atenea.models import ViTConfig, ViTForImageClassification

pytest.importorskip("matplotlib", reason="the pictures need matplotlib")
Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")


def tiny_classifier():
    torch.manual_seed(0)
    config = ViTConfig(image_size=12, patch_size=4, num_channels=3, dim=24, num_layers=2,
                       num_heads=3, ffn_hidden=40)  # fmt: skip
    return ViTForImageClassification(config, 4, labels=["ant", "bee", "cat", "dog"]).eval()


def test_patch_distances_by_hand():
    distances = patch_distances(2, 3)  # patches 0 1 2 / 3 4 5
    assert (
        distances[0, 2] == 2 and distances[0, 3] == 1 and distances[0, 5] == pytest.approx(5**0.5)
    )
    assert torch.equal(distances, distances.T) and distances.diag().abs().sum() == 0


def test_near_and_far_heads_measured_on_attention_built_by_hand():
    rows, cols, n = 3, 4, 12
    maps = torch.zeros(1, 3, 1 + n, 1 + n)
    maps[0, 0, :, 0] = 1.0  # head 0 looks at [CLS] only ...
    maps[0, 0, 1:, 1:] = torch.eye(n) * 0.5  # ... and half at itself: distance 0
    for patch in range(n):  # head 1: the patch to the right (the last column: to the left)
        right = patch + 1 if (patch % cols) < cols - 1 else patch - 1
        maps[0, 1, 1 + patch, 1 + right] = 1.0
    maps[0, 2, 1:, 1:] = 1.0 / n  # head 2: uniform over the patches
    distances = mean_patch_distance(maps, rows, cols)
    assert distances[0, 0] == 0 and distances[0, 1] == pytest.approx(1.0)
    assert distances[0, 2] == pytest.approx(float(patch_distances(rows, cols).mean()))
    # in words: itself and the next patch are near, uniform attention is far
    e = ImageExplanation(image=None, grid=(rows, cols), maps=maps, rollout=None, cls_maps=None,
                         distances=distances, baseline=float(patch_distances(rows, cols).mean()),
                         top=[])  # fmt: skip
    assert [e.head_kind(0, h) for h in range(3)] == ["near", "near", "far"]


def test_explanation_shapes_and_sums():
    model = tiny_classifier()
    image = torch.rand(3, 20, 28)  # resized to the model's 12 x 12
    e = explain_image(model, image)
    assert e.grid == (3, 3) and e.image.shape == (3, 12, 12)
    assert e.maps.shape == (2, 3, 10, 10)
    assert e.rollout.shape == (3, 3) and e.rollout.sum() == pytest.approx(1.0)
    assert e.cls_maps.shape == (2, 3, 3, 3)
    assert torch.allclose(e.cls_maps.sum((-1, -2)), torch.ones(2, 3))
    assert e.distances.shape == (2, 3)
    assert len(e.top) == 4 and e.top[0][1] >= e.top[-1][1]
    logits = model(atenea.models.vit.pixels(image[None], model.config)).logits[0]
    assert e.top[0][0] == model.labels[int(logits.argmax())]
    assert sum(p for _, p in e.top) == pytest.approx(1.0, abs=1e-5)


def test_explain_image_command(tmp_path, capsys):
    folder = atenea.save_pretrained(tiny_classifier(), tmp_path / "model")
    picture = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(
        picture
    )
    code = main(
        ["explain", "--image", str(picture), "--model", str(folder), "--png", str(tmp_path / "png"),
         "--out", str(tmp_path / "report.html")]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "prediction: " in out and "rollout from [CLS]" in out and "L1  " in out
    for name in ("rollout.png", "heads.png"):
        assert (tmp_path / "png" / name).read_bytes()[:4] == b"\x89PNG"
    assert 'id="atenea-data"' in (tmp_path / "report.html").read_text()


def test_explain_image_errors_are_one_line(tmp_path, capsys):
    folder = atenea.save_pretrained(tiny_classifier(), tmp_path / "model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    assert main(["explain", "--image", str(broken), "--model", str(folder)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("atenea explain: ") and "broken.jpg: not a readable image" in error
    assert error.count("\n") == 1
    assert main(["explain", "some text", "--image", str(broken), "--model", str(folder)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["explain", "--model", str(folder)]) == 2
    assert "give a TEXT to explain, or --image PATH" in capsys.readouterr().err
