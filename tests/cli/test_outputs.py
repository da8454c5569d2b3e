"""Nothing atenea did not write is overwritten (``cli/outputs.py``), and a run stopped by a
signal says so in its folder and goes on with ``--resume`` (to more steps, too)."""

import json
import os
import signal

import pytest

from atenea.cli.main import main
from atenea.cli.outputs import RUN_MARKER, is_atenea_run
from atenea.training import loop

SMALL = ["--set", "dim=16", "--set", "num_layers=1", "--set", "num_heads=2",
         "--set", "ffn_hidden=32", "--quiet", "--eval-every", "0", "--batch-size", "8"]  # fmt: skip


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    rows = [f"{'great' if i % 2 else 'awful'} film number {i},{'good' if i % 2 else 'bad'}"
            for i in range(40)]  # fmt: skip
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def _train(reviews, out, *extra) -> int:
    return run("train", "classify", "--data", reviews, "--out", out, "--steps", 4, *SMALL, *extra)


def test_a_folder_atenea_did_not_write_survives(reviews, tmp_path, capsys):
    folder = tmp_path / "minilm"
    folder.mkdir()
    mine = {"config.json": '{"model_type": "bert"}', "metrics.jsonl": "{}\n", "notes.txt": "x"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    assert _train(reviews, folder) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atenea train: --out: ") and "--overwrite" in err and "\n" not in err
    assert {p.name: p.read_text() for p in folder.iterdir()} == mine  # untouched
    assert not is_atenea_run(folder)

    assert _train(reviews, folder, "--overwrite") == 0  # the user means it
    assert (folder / "model.safetensors").is_file() and (folder / "notes.txt").read_text() == "x"
    assert is_atenea_run(folder)


def test_a_file_is_not_a_run_folder(reviews, tmp_path, capsys):
    target = tmp_path / "some.txt"
    target.write_text("precious")
    assert _train(reviews, target) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Errno" not in err and target.read_text() == "precious"
    assert _train(reviews, target, "--overwrite") == 0 and (target / "model.safetensors").is_file()


def test_an_out_that_cannot_be_a_folder_is_said_before_the_work(reviews, tmp_path, monkeypatch,
                                                                 capsys):  # fmt: skip
    """Under a file: the run used to train and then fail with "[Errno 20] Not a directory"."""
    from atenea.training import tasks

    def no_work(*args, **kwargs):
        raise AssertionError("the task was built before --out was made")

    monkeypatch.setattr(tasks, "build_task", no_work)
    (tmp_path / "afile").write_text("x")
    assert _train(reviews, tmp_path / "afile" / "run") == 2
    err = capsys.readouterr().err
    assert (
        err == f"atenea train: --out: cannot create the folder {tmp_path}/afile/run (Not a "
        "directory)\n"
    )


def test_explain_replaces_its_own_report_only(tmp_path, capsys):
    csv = tmp_path / "important.csv"
    csv.write_text("a,b\n1,2\n")
    code = run("explain", "the robot", "--model", "minilm", "--out", csv)
    assert code == 2 and csv.read_text() == "a,b\n1,2\n"
    assert "not an atenea report" in capsys.readouterr().err
    report = tmp_path / "r.html"
    assert run("explain", "the robot", "--model", "minilm", "--out", report) == 0
    assert run("explain", "a cat", "--model", "minilm", "--out", report) == 0  # ours: replaced
    assert run("explain", "a cat", "--model", "minilm", "--out", csv, "--overwrite") == 0
    assert "atenea-data" in csv.read_text()


def test_ctrl_c_before_the_first_checkpoint_is_kept_and_resumed(reviews, tmp_path, monkeypatch,
                                                                capsys):  # fmt: skip
    out = tmp_path / "run"
    step = loop._Run.train_step

    def interrupted_step(self, order):  # Ctrl-C during step 2 (the first save is at step 3)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, order)

    monkeypatch.setattr(loop._Run, "train_step", interrupted_step)
    assert _train(reviews, out, "--save-every", 3) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT; saved at step 2 of 4" in err
    assert f"atenea train classify --out {out} --resume" in err
    state = json.loads((out / RUN_MARKER).read_text())
    assert state["state"] == "interrupted" and state["checkpoint"].endswith("checkpoint-000002")
    monkeypatch.undo()

    # A folder without a model says what happened and how to go on.
    assert run("evaluate", "--model", out) == 2
    err = capsys.readouterr().err
    assert "unfinished run (interrupted by SIGINT" in err and "--resume" in err

    assert run("train", "classify", "--out", out, "--resume", "--quiet") == 0
    assert json.loads((out / RUN_MARKER).read_text())["state"] == "finished"
    whole = tmp_path / "whole"  # the same command, never interrupted: the very same model
    assert _train(reviews, whole, "--save-every", 3) == 0
    assert (out / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()

    assert run("train", "classify", "--out", out, "--resume", "--steps", 6, "--quiet") == 0
    info = json.loads((out / "task.json").read_text())
    assert info["training"]["steps"] == 6 and (out / "model.safetensors").is_file()
    assert run("evaluate", "--model", out) == 0
