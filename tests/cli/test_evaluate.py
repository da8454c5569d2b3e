"""``atenea evaluate``: the numbers training logged, per-class precision / recall / F1 and the
confusion matrix as scikit-learn computes them, labels the model never saw counted, the
predictions written, BLEU's limits said, and the hint after training names the held-out split."""

import csv
import json

import pytest

from atenea.training.metrics_log import read_metrics
from tests.cli.conftest import SMALL, run

PNG = b"\x89PNG\r\n\x1a\n"


def _metrics(text: str) -> dict[str, float]:
    lines = text.split("\n\n")[0].splitlines()  # the metrics come first
    return {line.split()[0]: float(line.split()[1]) for line in lines}


@pytest.mark.parametrize("model", ["classifier", "translator"])
def test_the_held_out_split_scores_as_training_logged(model, request, capsys):
    folder = request.getfixturevalue(model)
    assert run("evaluate", "--model", folder) == 0
    logged = [r["eval"] for r in read_metrics(folder) if "eval" in r][-1]
    assert _metrics(capsys.readouterr().out) == pytest.approx(logged, abs=5e-5)


def test_per_class_report_and_confusion_match_scikit_learn(classifier, small_data, tmp_path,
                                                            capsys):  # fmt: skip
    metrics = pytest.importorskip("sklearn.metrics")
    rows = list(csv.reader((small_data / "reviews.csv").open()))[1:]
    rows[:6] = [(text, "meh") for text, _ in rows[:6]]  # a label the model never learned
    data = tmp_path / "more.csv"
    with data.open("w", newline="") as handle:
        csv.writer(handle).writerows([("review", "stars"), *rows])
    predictions, picture = tmp_path / "predictions.csv", tmp_path / "confusion.png"
    assert run("evaluate", "--model", classifier, "--data", data, "--predictions", predictions,
               "--png", picture) == 0  # fmt: skip
    out = capsys.readouterr().out
    written = list(csv.DictReader(predictions.open()))
    truth, guess = [r["reference"] for r in written], [r["prediction"] for r in written]
    assert [r["input"] for r in written] == [text for text, _ in rows]
    assert _metrics(out)["accuracy"] == pytest.approx(
        metrics.accuracy_score(truth, guess), abs=5e-5
    )
    assert "note: 6 of 64 examples have labels the model never learned ('meh' x6)" in out
    labels = ["bad", "good", "meh"]
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, guess, labels=labels, zero_division=0
    )
    table = {line.split()[0]: line.split()[1:] for line in out.split("\n\n")[1].splitlines()[1:]}
    for i, label in enumerate(labels):
        assert [float(v) for v in table[label][:3]] == pytest.approx(
            [precision[i], recall[i], f1[i]], abs=5e-5)  # fmt: skip
        assert int(table[label][3]) == support[i]
    matrix = out.split("confusion matrix (rows: true label, columns: predicted)\n")[1]
    counts = [[int(v) for v in line.split()[1:]] for line in matrix.splitlines()[1:4]]
    assert counts == metrics.confusion_matrix(truth, guess, labels=labels).tolist()
    assert picture.read_bytes()[:8] == PNG


def test_single_word_translations_are_read_by_exact_match_and_chrf(translator, small_data,
                                                                    tmp_path, capsys):  # fmt: skip
    predictions = tmp_path / "p.csv"
    assert run("evaluate", "--model", translator, "--data", small_data / "dates.tsv",
               "--predictions", predictions) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert list(_metrics(out)) == ["exact_match", "chrf", "bleu"]  # BLEU last
    assert "note: 28 of 28 references have fewer than 4 words, so BLEU" in out
    assert len(list(csv.DictReader(predictions.open()))) == 28


def test_the_hint_after_training_names_the_held_out_split(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in SMALL if a != "--quiet"]
    assert run("train", "classify", "--data", small_data / "reviews.csv", "--text-column",
               "review", "--label-column", "stars", "--steps", 2, "--batch-size", 16,
               "--out", out, *args) == 0  # fmt: skip
    hint = [line for line in capsys.readouterr().out.splitlines() if "atenea evaluate" in line]
    assert hint == [f"  atenea evaluate --model {out}      (its held-out validation split)"]
    assert json.loads((out / "task.json").read_text())["validation"] is None
