"""Metrics against hand-computed values, scikit-learn and sacrebleu's own numbers."""

import math
import random

import pytest
import torch

from atenea.training.metrics import (
    accuracy,
    bleu,
    chrf,
    confusion_matrix,
    exact_match,
    macro_f1,
    perplexity,
)


def test_accuracy_and_exact_match():
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 0.5
    assert accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert exact_match(
        [" 2026-11-21\n", "2026-11-22", "2026-1-2"], ["2026-11-21", "2026-11-21", "2026-01-02"]
    ) == pytest.approx(1 / 3)


def test_macro_f1_by_hand():
    # a: tp 1, fp 1, fn 1 -> 1/2; b: tp 1, fp 0, fn 1 -> 2/3; c: tp 0, fp 1, fn 0 -> 0
    predictions = ["a", "a", "b", "c"]
    references = ["a", "b", "b", "a"]
    assert macro_f1(predictions, references) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert macro_f1(["x", "y"], ["x", "y"]) == 1.0
    # a label that is never predicted counts as 0, not skipped
    assert macro_f1(["a", "a"], ["a", "b"]) == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    labels = ["pos", "neg", "neutral", "mixed"][: rng.randint(2, 4)]
    references = [rng.choice(labels) for _ in range(50)]
    predictions = [r if rng.random() < 0.5 else rng.choice(labels + ["other"]) for r in references]
    expected = metrics.f1_score(references, predictions, average="macro", zero_division=0)
    assert macro_f1(predictions, references) == pytest.approx(expected)


def test_confusion_matrix_counts_by_hand():
    # class numbers (the image task) and class names (the text classifier) alike
    matrix = confusion_matrix([0, 2, 2, 1, 0], [0, 2, 1, 1, 2], range(3))
    assert matrix == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    named = confusion_matrix(["b", "a", "a"], ["a", "a", "c"], ["a", "b", "c"])
    assert named == [[1, 1, 0], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"references\[1\]: 'd' is not one of the labels"):
        confusion_matrix(["a", "a"], ["a", "d"], ["a", "b"])
    with pytest.raises(ValueError, match=r"labels: each label once, got 'a' more than once"):
        confusion_matrix(["a", "b"], ["a", "b"], ["a", "b", "a"])  # two rows for "a"


def test_bleu_and_chrf():
    sacrebleu = pytest.importorskip("sacrebleu")
    references = ["the cat sat on the mat", "a dog barked at the moon tonight"]
    assert bleu(references, references) == pytest.approx(100.0)
    assert chrf(references, references) == pytest.approx(100.0)
    predictions = ["the cat sat on a mat", "a dog barked at the sun tonight"]
    score = bleu(predictions, references)
    assert 0 < score < 100
    assert score == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert chrf(predictions, references) == pytest.approx(
        sacrebleu.corpus_chrf(predictions, [references]).score
    )
    assert bleu(["zzz qqq"], ["the cat sat on the mat"]) == 0.0


def test_perplexity():
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert perplexity(torch.tensor(20.0), torch.tensor(10)) == pytest.approx(math.exp(2.0))
    assert perplexity(1e6, 1) == float("inf")
    with pytest.raises(ValueError, match="total_tokens: expected a positive count, got 0"):
        perplexity(3.0, 0)
    for count in (2.7, 0.5, float("nan")):  # int() would have made them 2 and 0 tokens
        with pytest.raises(ValueError, match=f"got {count}"):
            perplexity(1.0, count)


@pytest.mark.parametrize("metric", [accuracy, macro_f1, exact_match, bleu, chrf])
def test_bad_input(metric):
    with pytest.raises(ValueError, match=r"lengths differ \(2 predictions, 1 references\)"):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="predictions: empty"):
        metric([], [])


@pytest.mark.parametrize("metric", [exact_match, bleu, chrf])
def test_text_metrics_want_strings(metric):
    with pytest.raises(ValueError, match=r"references\[1\]: expected a str, got int"):
        metric(["a", "b"], ["a", 3])
