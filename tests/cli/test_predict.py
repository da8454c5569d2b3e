"""``atenea predict`` on small trained models: a classifier's labels and probabilities (the
model's own softmax, label names from ``model.config.id2label``), a translator's and a language
model's greedy outputs (the same text ``atenea generate`` writes), files in and out."""

import csv

import pytest
import torch

import atenea
from tests.cli.conftest import SMALL, run


def test_classify_prints_the_label_and_the_models_probabilities(classifier, capsys):
    model, tokenizer = atenea.load_pretrained(classifier)
    assert model.config.id2label == {0: "bad", 1: "good"}  # from the folder, as in HF
    capsys.readouterr()
    assert run("predict", "--model", classifier, "great film 3") == 0
    label, probability = capsys.readouterr().out.split()[:2]
    ids = torch.tensor([tokenizer.encode("great film 3")])
    with torch.no_grad():
        expected = torch.softmax(model(ids).logits[0], -1)
    assert label == model.config.id2label[int(expected.argmax())] == "good"
    assert float(probability) == pytest.approx(float(expected.max()), abs=0.005)


def test_classify_a_file_into_a_csv(classifier, small_data, tmp_path, capsys):
    output = tmp_path / "preds.csv"
    assert run("predict", "--model", classifier, "--data", small_data / "reviews.csv",
               "--output", output) == 0  # fmt: skip
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 64 and set(rows[0]) == {"input", "prediction", "p(bad)", "p(good)"}
    for row in rows:
        chances = {"bad": float(row["p(bad)"]), "good": float(row["p(good)"])}
        assert sum(chances.values()) == pytest.approx(1, abs=1e-5)
        assert row["prediction"] == max(chances, key=chances.get)
    accuracy = sum(r["prediction"] == ("good" if "great" in r["input"] else "bad") for r in rows)
    assert accuracy / len(rows) > 0.9  # it learned the one word that decides
    capsys.readouterr()
    assert run("predict", "--model", classifier, "x", "--output", output) == 2  # not replaced
    assert "--overwrite" in capsys.readouterr().err and len(output.read_text().splitlines()) == 65


def test_explain_shows_the_classifiers_prediction(classifier, tmp_path, capsys):
    assert run("explain", "awful film 2", "--model", classifier, "--out", tmp_path / "r.html") == 0
    assert "prediction: bad 0." in capsys.readouterr().out


@pytest.mark.parametrize("task", ["translate", "lm"])
def test_translate_and_lm_say_what_generate_says(task, translator, small_data, tmp_path, capsys):
    out = translator
    if task == "lm":
        out = tmp_path / task
        assert run("train", "lm", "--data", small_data / "notes.txt", "--steps", 3,
                   "--batch-size", 4, "--out", out, "--vocab-size", 260, "--max-length", 32,
                   *SMALL) == 0  # fmt: skip
    prompt = "3 de mayo" if task == "translate" else "the cat"
    capsys.readouterr()
    assert run("predict", "--model", out, prompt, "--max-new-tokens", 8) == 0
    predicted = capsys.readouterr().out.strip()
    limit = "32" if task == "translate" else "8"  # translate: as many tokens as the task allows
    assert run("generate", "--model", out, "--prompt", prompt, "--max-new-tokens", limit) == 0
    assert capsys.readouterr().out.strip() == predicted


def test_bad_input_is_one_line(classifier, small_data, tmp_path, capsys):
    assert run("predict", "--model", classifier) == 2  # no input
    assert run("predict", "--model", classifier, "--data", small_data / "reviews.csv",
               "--column", "nope") == 2  # fmt: skip
    assert run("predict", "--model", tmp_path, "x") == 2  # not a run folder
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("atenea predict: ") for line in lines)
    assert "'nope'" in lines[1] and "task.json" in lines[2]


def test_a_text_that_is_not_utf8_is_one_line(classifier, capsys):
    """Bytes that are not UTF-8 reach argv as lone surrogates, which the tokenizer refuses
    with a TypeError deep inside: said in one line instead."""
    assert run("predict", "--model", classifier, "caf\udce9") == 2
    assert (
        capsys.readouterr().err
        == "atenea predict: TEXT is not valid UTF-8 (check the terminal's encoding)\n"
    )


def test_a_bert_shaped_classifier_loads_in_transformers_with_its_labels(small_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "bert"
    assert run("train", "classify", "--data", small_data / "reviews.csv", "--text-column",
               "review", "--label-column", "stars", "--steps", 2, "--batch-size", 16,
               "--set", "pooling=cls", "--set", "pooler=true", "--out", out, *SMALL) == 0  # fmt: skip
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(theirs).__name__ == "BertForSequenceClassification"
    assert theirs.config.id2label == {0: "bad", 1: "good"}
    ours, tokenizer = atenea.load_pretrained(out)
    assert ours.config.id2label == {0: "bad", 1: "good"}
    batch = tokenizer(["great film 3", "awful film 1 and more"])
    with torch.no_grad():
        expected = theirs(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        found = ours(batch["input_ids"], batch["attention_mask"]).logits
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("run_name", ["classifier", "translator"])
def test_long_predictions_show_a_bar_and_give_what_one_batch_gives(run_name, request,
                                                                    progress_bars):  # fmt: skip
    """Predicting 70 inputs goes a batch (64) at a time under a bar that counts inputs (shown
    on a terminal only: ``disable=None``); the predictions are those of one call without."""
    from atenea.training.predict import Predictor

    shown = progress_bars
    predictor = Predictor.from_folder(request.getfixturevalue(run_name))
    texts = [f"{day} march 20{day:02d}" for day in range(1, 71)]
    quiet = predictor.predict(texts)
    assert predictor.predict(texts, progress=True) == quiet
    assert [r["prediction"] for r in predictor._predict(texts)] == [  # all 70 in one batch
        r["prediction"] for r in quiet
    ]
    assert shown[0]["disable"] is True and shown[3]["disable"] is None  # off, then a terminal's
    assert shown[3]["total"] == 70 and shown[1:3] == shown[4:] == [64, 6]
