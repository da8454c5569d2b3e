"""``atenea steps`` end to end: the printed steps, the check against the library, the PNG."""

import subprocess
import sys

import pytest
import torch

from atenea.cli.main import main
from atenea.cli.steps import run_steps


def test_steps_prints_every_step_and_writes_the_heatmap(tmp_path, capsys):
    png = tmp_path / "weights.png"
    assert main(["steps", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    for heading in [
        "Step 1. Input X",
        "Step 2. Projections",
        "Step 3. Scores",
        "Scaled scores",
        "Step 4. Mask: none",
        "Step 5. Softmax",
        "Step 6. Output",
        "Step 7. Inspect",
    ]:
        assert heading in text
    assert "el | banco | cerró | temprano" in text
    assert "(each is 1: ok)" in text
    check = [line for line in text.splitlines() if line.startswith("Check:")][0]
    assert float(check.rsplit(" ", 1)[1].rstrip(")")) < 1e-5
    # a real picture: a PNG, not blank (many distinct colours)
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[1] > 300 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_causal_steps_mask_the_future(tmp_path):
    tensors = run_steps("the cat chased the mouse", causal=True, png=None, echo=lambda *_: None)
    weights = tensors["weights"]
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))
    assert torch.allclose(weights.sum(-1), torch.ones(5))
    # the same word has the same embedding wherever it appears
    assert torch.equal(tensors["x"][0], tensors["x"][3])
    assert torch.allclose(tensors["y"], tensors["library"], atol=1e-6)


def test_steps_is_reproducible_and_seeded():
    a = run_steps(seed=1, png=None, echo=lambda *_: None)
    b = run_steps(seed=1, png=None, echo=lambda *_: None)
    c = run_steps(seed=2, png=None, echo=lambda *_: None)
    assert torch.equal(a["weights"], b["weights"]) and not torch.equal(a["weights"], c["weights"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["steps", "   "], "give at least one word"),
        (["steps", " ".join(["w"] * 17)], "too many"),
        (["steps", "--d-k", "0"], "--d-model and --d-k"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(args, message, capsys):
    assert main(args + ["--no-png"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "atenea", "steps", "--causal", "--png", str(tmp_path / "w.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Step 4. Causal mask" in result.stdout and (tmp_path / "w.png").exists()


def test_unwritable_heatmap_path_is_a_message(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["steps", "--png", str(blocker / "weights.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the heatmap" in err and "Traceback" not in err


def test_without_matplotlib_the_steps_still_print(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert main(["steps", "--png", str(tmp_path / "w.png")]) == 0
    text = capsys.readouterr().out
    assert "no heatmap: matplotlib is not installed" in text and "Check:" in text
    assert not (tmp_path / "w.png").exists()
