"""``atenea train lm --segment L --memory M`` and ``atenea evaluate`` with and without the memory:
the run, the saved config, the two perplexities and the errors."""

import json

import pytest

import atenea
from atenea.cli.main import main
from atenea.training.data import Split
from atenea.training.tasks import build_task
from tests.helpers import random_texts

SMALL = ["--set", "dim=32", "--set", "num_layers=1", "--set", "num_heads=2",
         "--set", "ffn_hidden=64", "--vocab-size", "300"]  # fmt: skip
QUICK = ["--eval-every", "0", "--quiet", "--seed", "0", "--batch-size", "4"]


def run(*args) -> int:
    return main([str(a) for a in args])


def texts(count: int, seed: int) -> list[dict]:
    return random_texts(count, seed, words=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    for i, doc in enumerate(texts(8, 0)):
        (root / f"doc{i}.txt").write_text(doc["text"])
    return root


def test_train_and_evaluate_with_memory(folder, tmp_path, capsys):
    out = tmp_path / "lm"
    code = run("train", "lm", "--data", folder, "--segment", 16, "--memory", 32, "--steps", 4,
               "--out", out, *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    info = json.loads((out / "task.json").read_text())
    assert info["options"]["segment"] == 16 and info["model_config"]["memory_len"] == 32
    model, _ = atenea.load_pretrained(out)
    assert model.config.memory_len == 32 and model.config.positions == "rotary"
    capsys.readouterr()
    assert run("evaluate", "--model", out, "--limit", 3, "--out", tmp_path / "scores") == 0
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["perplexity", "loss", "perplexity_no_memory", "loss_no_memory"]
    scores = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scores["perplexity"] != scores["perplexity_no_memory"]  # the memory is used


def test_carried_memory_with_alibi_through_the_cli(folder, tmp_path, capsys):
    """--set carry_memory=true --set positions=alibi: saved in task.json and config.json, and
    the saved model evaluates with and without its memory."""
    out = tmp_path / "carried"
    code = run("train", "lm", "--data", folder, "--segment", 16, "--memory", 32, "--steps", 3,
               "--set", "carry_memory=true", "--set", "positions=alibi", "--out", out,
               *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    info = json.loads((out / "task.json").read_text())
    assert info["options"]["carry_memory"] is True
    model, _ = atenea.load_pretrained(out)
    assert model.config.positions == "alibi" and model.config.memory_len == 32
    capsys.readouterr()
    assert run("evaluate", "--model", out, "--limit", 2, "--out", tmp_path / "scores") == 0
    scores = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scores["perplexity"] != scores["perplexity_no_memory"]


def test_memory_zero_evaluates_the_same_both_ways():
    """With memory_len 0 the two evaluation paths run the same computation: equal numbers."""
    task = build_task("lm", data=Split(texts(6, 1), texts(2, 2)), vocab_size=300,
                      overrides={"segment": "16", "memory_len": "0", "dim": "32",
                                 "num_layers": "1", "num_heads": "2"})  # fmt: skip
    model = task.build_model()
    metrics = task.evaluate(model)
    assert metrics["perplexity"] == metrics["perplexity_no_memory"]
    assert task.window == 1 and task.train_rows[0].shape[1] == 16


def test_training_windows_cover_the_memory():
    task = build_task("lm", data=Split(texts(6, 1), texts(2, 2)), vocab_size=300,
                      overrides={"segment": "16", "memory_len": "40", "dim": "32",
                                 "num_layers": "1", "num_heads": "2"})  # fmt: skip
    assert task.window == 4  # ceil(40 / 16) + 1 segments: the last one sees a full memory
    assert task.train_rows[0].shape[1] == 64
    loss = task.loss(task.build_model(), task.batch(range(2), None))
    loss.backward()  # a differentiable mean over the window's segments
    assert loss.dim() == 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--memory", "8"], "atenea train: --memory: needs --segment L"),
        (["--segment", "1"], "atenea train: --segment: expected an integer >= 2, got 1"),
        (["--segment", "4096"], "atenea train: segment: the texts hold"),
    ],
)
def test_errors_are_one_line(folder, tmp_path, capsys, args, expected):
    code = run("train", "lm", "--data", folder, "--steps", 1, "--out", tmp_path / "x",
               *SMALL, *QUICK, *args)  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(expected) and "\n" not in err, err
