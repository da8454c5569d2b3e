"""The pictures of ``steps``, ``cost``, ``explain --png`` and ``evaluate --png`` replace a PNG that
atenea drew (it carries atenea's mark) but no other file unless ``--overwrite``, refused before
the work; ``evaluate --png`` draws an image classifier's confusion matrix and says in one line
that other models have none; and ``train images --steps N`` warms up for at most N/2 steps."""

import json

import pytest

from atenea.inspect.plots import is_atenea_png
from tests.cli.conftest import run

TINY_VIT = ["--set", "dim=16", "--set", "num_layers=1", "--set", "num_heads=2",
            "--set", "ffn_hidden=32", "--quiet", "--eval-every", "0", "--seed", "0"]  # fmt: skip


def refused(capsys, command: str, flag: str = "--png") -> None:
    captured = capsys.readouterr()
    assert captured.err.startswith(f"atenea {command}: {flag}: "), captured.err
    assert "--overwrite" in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert captured.out == ""  # refused before anything is printed: before the work


def mine(path, text="my own picture"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def test_steps_keeps_a_png_of_the_users(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    picture = mine(tmp_path / "mine.png")
    assert run("steps", "--lang", "en", "--png", picture) == 2
    refused(capsys, "steps")
    default = mine(tmp_path / "attention_steps.png")  # the default name, but not atenea's
    assert run("steps", "--lang", "en") == 2
    refused(capsys, "steps")
    assert picture.read_text() == default.read_text() == "my own picture"
    assert run("steps", "--lang", "en", "--overwrite") == 0
    assert is_atenea_png(default) and "attention_steps.png" in capsys.readouterr().out
    assert run("steps", "--lang", "en") == 0  # atenea's own picture: drawn again


def test_cost_keeps_a_png_of_the_users(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    quick = ["cost", "--lengths", "8,16", "--paths", "fused", "--repeats", "1", "--lang", "en"]
    picture = mine(tmp_path / "mine.png")
    assert run(*quick, "--png", picture) == 2
    refused(capsys, "cost")
    default = mine(tmp_path / "attention_cost.png")
    assert run(*quick) == 2
    refused(capsys, "cost")
    assert picture.read_text() == default.read_text() == "my own picture"
    assert run(*quick, "--overwrite") == 0 and is_atenea_png(default)
    assert run(*quick) == 0


def test_explain_png_keeps_the_users_files(classifier, tmp_path, capsys):
    folder = tmp_path / "pictures"
    rollout = mine(folder / "rollout.png")
    report = tmp_path / "report.html"
    args = ["explain", "great film", "--model", classifier, "--out", report, "--png", folder]
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("atenea explain: --png: ") and "rollout.png" in err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert rollout.read_text() == "my own picture" and not report.exists()  # nothing written
    assert run(*args, "--overwrite") == 0 and is_atenea_png(rollout)
    assert run(*args) == 0  # atenea's own pictures: drawn again


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny image classifier on the built-in digits, 4 steps."""
    pytest.importorskip("sklearn.datasets", reason="the digits come with scikit-learn")
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = run("train", "images", "--data", "digits", "--steps", 4, "--batch-size", 16,
               "--out", out, *TINY_VIT)  # fmt: skip
    assert code == 0
    return out


def test_a_built_in_image_run_warms_up_for_at_most_half_its_steps(digits_run):
    training = json.loads((digits_run / "task.json").read_text())["training"]
    assert training["steps"] == 4 and training["warmup"] == 2


def test_explain_image_png_keeps_the_users_files(digits_run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.new("L", (8, 8), 128).save(image)
    folder = tmp_path / "pictures"
    heads = mine(folder / "heads.png")
    args = ["explain", "--image", image, "--model", digits_run, "--out", tmp_path / "r.html",
            "--png", folder]  # fmt: skip
    assert run(*args) == 2
    refused(capsys, "explain")
    assert heads.read_text() == "my own picture" and not (folder / "rollout.png").exists()
    assert run(*args, "--overwrite") == 0 and is_atenea_png(heads)


def test_evaluate_png_of_an_image_classifier(digits_run, tmp_path, capsys):
    picture = mine(tmp_path / "confusion.png")
    assert run("evaluate", "--model", digits_run, "--png", picture, "--limit", 40) == 2
    refused(capsys, "evaluate")
    assert picture.read_text() == "my own picture"
    assert run("evaluate", "--model", digits_run, "--png", picture, "--limit", 40,
               "--overwrite") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "confusion matrix (rows: true label, columns: predicted)" in out
    assert is_atenea_png(picture) and f"confusion matrix: {picture}" in out


def test_evaluate_png_needs_a_classifier(translator, tmp_path, capsys):
    picture = tmp_path / "c.png"
    assert run("evaluate", "--model", translator, "--png", picture) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("atenea evaluate: --png: ") and "classifier" in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == "" and not picture.exists()
