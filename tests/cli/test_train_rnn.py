"""``atenea train translate --arch rnnsearch | rnnencdec`` end to end on a small slice: train,
the pictures, generate, explain (the alignment), evaluate, and an exact resume."""

import json
import random
import re
import shutil

import pytest
from safetensors.torch import load_file

import atenea
from atenea.cli.main import main
from atenea.models import RNNEncDec, RNNSearch
from atenea.training.metrics_log import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"
QUICK = ["--eval-every", "0", "--quiet", "--seed", "0"]


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    """12 Spanish dates and their ISO form (a task small enough to memorise in seconds)."""
    rng = random.Random(3)
    months = ("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
              "diciembre").split()  # fmt: skip
    days = [(rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2030)) for _ in range(12)]
    lines = [f"{d} de {months[m - 1]} de {y}\t{y}-{m:02d}-{d:02d}" for d, m, y in days]
    path = tmp_path_factory.mktemp("data") / "dates.tsv"
    path.write_text("source\ttarget\n" + "\n".join(lines) + "\n")
    return path


def evals(folder, metric="exact_match"):
    return [r["eval"][metric] for r in read_metrics(folder) if "eval" in r]


def test_rnnsearch_from_training_to_its_alignment(dates, tmp_path, capsys):
    out = tmp_path / "rnnsearch"
    code = run("train", "translate", "--arch", "rnnsearch", "--data", dates, "--validation",
               dates, "--tokenizer", "chars", "--steps", 16, "--batch-size", 12, "--lr", 1e-2,
               "--warmup", 5, "--max-length", 28, "--set", "label_smoothing=0", "--out", out, *QUICK)  # fmt: skip
    assert code == 0
    model, tokenizer = atenea.load_pretrained(out)
    assert isinstance(model, RNNSearch)
    info = json.loads((out / "task.json").read_text())
    assert info["options"]["arch"] == "rnnsearch"
    losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert len(losses) == 16 and losses[-1] < 0.7 * losses[0], losses  # it learns
    assert len(evals(out)) == 2  # step 0 and the end
    pictures = sorted((out / "alignments").iterdir())
    assert len(pictures) == 4 and all(p.read_bytes()[:8] == PNG for p in pictures)

    source = dates.read_text().splitlines()[1].split("\t")[0]
    capsys.readouterr()
    assert run("generate", "--model", out, "--prompt", source, "--max-new-tokens", 12) == 0
    assert capsys.readouterr().out.strip()
    assert run("generate", "--model", out, "--prompt", source, "--num-beams", 3) == 0

    report, folder = tmp_path / "report.html", tmp_path / "png"
    assert run("explain", source, "--model", out, "--out", report, "--png", folder) == 0
    printed = capsys.readouterr().out
    assert "alignment: each target token" in printed and "RNNSearch" in printed
    assert run("explain", source, "--model", out, "--out", report, "--lang", "es") == 0
    spanish = capsys.readouterr().out.split("\ninforme:")[0]
    assert "fuente: " in spanish and "alineamiento: cada token del destino" in spanish
    numbers = re.compile(r"\d+\.\d+")  # the same weights and entropy, in either language
    assert numbers.findall(spanish) == numbers.findall(printed.split("\nreport:")[0])
    assert (folder / "alignment.png").read_bytes()[:8] == PNG
    page = report.read_text()
    assert "alignment (target rows x source columns)" in page
    assert run("explain", source, "--model", out, "--layer", 1, "--out", report) == 2
    assert "one attention" in capsys.readouterr().err

    assert run("evaluate", "--model", out, "--data", dates) == 0
    assert "exact_match" in capsys.readouterr().out


def test_rnnencdec_resumes_exactly_and_has_no_alignment(dates, tmp_path, capsys):
    out = tmp_path / "rnnencdec"
    args = ["train", "translate", "--arch", "rnnencdec", "--data", dates, "--validation", dates,
            "--tokenizer", "chars", "--steps", 6, "--batch-size", 4, "--save-every", 3,
            "--out", out, *QUICK]  # fmt: skip
    assert run(*args) == 0
    model, _ = atenea.load_pretrained(out)
    assert isinstance(model, RNNEncDec)
    assert not (out / "alignments").exists()  # no attention, nothing to draw
    straight = load_file(out / "model.safetensors")
    # Interrupted after step 3: the last checkpoint is gone; --resume must end where it did.
    shutil.rmtree(out / "checkpoints" / "checkpoint-000006")
    assert run("train", "translate", "--out", out, "--resume", "--quiet") == 0
    resumed = load_file(out / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all((straight[k] == resumed[k]).all() for k in straight)
    capsys.readouterr()
    assert run("train", "translate", "--out", out, "--resume", "--arch", "rnnsearch") == 2
    assert "--arch" in capsys.readouterr().err
    assert run("explain", "8 de enero de 1990", "--model", out, "--out", tmp_path / "r.html") == 2
    assert "no attention" in capsys.readouterr().err


def test_arch_errors(capsys):
    assert run("train", "classify", "--arch", "rnnsearch") == 2
    assert "arch" in capsys.readouterr().err
    assert run("train", "translate", "--arch", "rnnsearch", "--set", "num_heads=2") == 2
    assert "num_heads" in capsys.readouterr().err
