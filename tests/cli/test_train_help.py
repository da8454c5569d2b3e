"""``atenea train TASK --help`` shows the task's defaults and sizes (the numbers runs use),
``--list-presets`` all of them, every run starts with a summary, and ``--set num_heads`` names
only settings that exist."""

import re

import pytest

from atenea.training.tasks import DEFAULTS, TASKS
from tests.cli.conftest import SMALL, run


@pytest.mark.parametrize("task", TASKS)
def test_task_help_shows_its_defaults(task, capsys):
    with pytest.raises(SystemExit) as exit_:
        run("train", task, "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: atenea train" in out and f"{task} defaults (a run with no flags):" in out
    d = DEFAULTS[task]
    assert f"--steps {d['steps']}  --batch-size {d['batch_size']}  --lr {d['lr']:g}" in out
    assert re.search(r"tiny +dim \d+, layers .*\[default\]", out)
    others = [t for t in TASKS if t != task]
    assert not any(f"\n{t} defaults" in out for t in others)


def test_list_presets_and_plain_help(capsys):
    with pytest.raises(SystemExit):
        run("train", "--list-presets")
    out = capsys.readouterr().out
    assert all(f"{task} sizes" in out for task in TASKS)
    # a 256-wide "small" is not bert-base: the list says the preset was resized
    assert "small  dim 256, layers 4, heads 4, ffn 1024  (the bert-base preset, resized)" in out
    assert "base   dim 768, layers 12, heads 12, ffn 3072  (the bert-base preset)\n" in out
    with pytest.raises(SystemExit):
        run("train", "--help")
    assert "atenea train TASK --help" in capsys.readouterr().out


def test_a_run_starts_with_a_summary(small_data, tmp_path, capsys):
    args = [a for a in SMALL if a != "--quiet"]
    assert run("train", "classify", "--data", small_data / "reviews.csv", "--text-column",
               "review", "--label-column", "stars", "--steps", 2, "--batch-size", 16,
               "--out", tmp_path, *args) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    counts = re.fullmatch(r"atenea train classify: (\d+) training examples, (\d+) validation",
                          lines[0])  # fmt: skip
    train, validation = int(counts.group(1)), int(counts.group(2))
    assert train + validation == 64 and validation > 0
    labels = re.fullmatch(r"  labels: bad (\d+), good (\d+)", lines[1])
    assert int(labels.group(1)) + int(labels.group(2)) == train
    assert re.fullmatch(r"  model: EncoderForSequenceClassification, [\d.]+M parameters, on "
                        r"(cpu|cuda), float32", lines[2])  # fmt: skip
    assert lines[3].startswith("  run: 2 steps of 16 examples") and str(tmp_path) in lines[4]


def test_the_summary_counts_what_each_task_evaluates_on(small_data, tmp_path, capsys):
    """lm keeps its validation rows as a tuple of tensors: the count is the rows, not 3."""
    from atenea.training import tasks

    args = [a for a in SMALL if a != "--quiet"]
    assert run("train", "lm", "--data", small_data / "notes.txt", "--steps", 1, "--batch-size",
               2, "--max-length", 8, "--device", "cpu", "--out", tmp_path, *args) == 0  # fmt: skip
    first = capsys.readouterr().out.splitlines()[0]
    task = tasks.from_description(tasks.read_description(tmp_path), tmp_path)
    expected = task.val_rows[0].shape[0]
    assert first.endswith(f" {expected} validation") and expected != 3, first


@pytest.mark.parametrize(
    ("task", "expected"),
    [("classify", "set dim to a multiple of 5 (e.g. dim=125)"), ("lm", "or head_dim")],
)
def test_num_heads_that_do_not_divide_the_width(task, expected, small_data, tmp_path, capsys):
    data = small_data / ("reviews.csv" if task == "classify" else "notes.txt")
    assert run("train", task, "--data", data, "--set", "num_heads=5", "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("atenea train: --set: num_heads=5 does not divide dim=128")
        and expected in err
    )
    if task == "classify":
        assert "head_dim" not in err  # not a setting of an encoder


def test_a_default_batch_larger_than_the_data_shrinks(small_data, tmp_path, capsys):
    # 28 dates, 25 of them for training, against translate's default batch of 64
    args = [a for a in SMALL if a != "--quiet"]
    assert run("train", "translate", "--data", small_data / "dates.tsv", "--tokenizer", "chars",
               "--steps", 1, "--out", tmp_path, *args) == 0  # fmt: skip
    out = capsys.readouterr().out
    note = re.search(r"note: (\d+) training examples, fewer than the default batch of 64: "
                     r"batch size (\d+)", out)  # fmt: skip
    assert note and note.group(1) == note.group(2)
    assert (
        run(
            "train",
            "translate",
            "--data",
            small_data / "dates.tsv",
            "--batch-size",
            64,
            "--out",
            tmp_path / "explicit",
            *SMALL,
        )
        == 2
    )  # an explicit batch is kept: an error
    assert "--batch-size" in capsys.readouterr().err


def test_the_summary_says_which_built_in_set_and_what_was_missing(monkeypatch):
    """With no --data, images takes the first installed set: digits, when Fashion-MNIST is not
    there, which the run's summary says (it used to train on 8x8 digits without a word)."""
    from types import SimpleNamespace

    import torch

    from atenea.cli.train_help import run_summary
    from atenea.training import loop
    from atenea.training.datasets import images as reading
    from atenea.training.tasks import images

    real = reading.builtin
    monkeypatch.setattr(reading, "builtin", lambda name, seed: real("digits", seed))
    _, _, source = images.read_data(None, None, 0, None)
    assert source == {"builtin": {"name": "digits", "instead_of": "fashion-mnist"}}
    assert images.read_data("digits", None, 0, None)[2] == {"builtin": {"name": "digits"}}
    task = SimpleNamespace(name="images", info=source, num_train_examples=lambda: 1437,
                           num_validation_examples=lambda: 360)  # fmt: skip
    config = loop.TrainConfig(output="runs/images", steps=2)
    lines = run_summary(task, torch.nn.Linear(2, 2), config, resumed=False).splitlines()
    assert lines[1] == ("  data: the built-in digits (fashion-mnist is not installed: make data, "
                        "or pass --data)")  # fmt: skip
