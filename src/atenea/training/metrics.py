"""Evaluation metrics, as plain functions of Python lists.

``accuracy``, ``macro_f1`` and ``exact_match`` are fractions in [0, 1]; ``confusion_matrix``
counts examples per (true, predicted) label; ``bleu`` and ``chrf`` are sacrebleu's corpus
scores in [0, 100]; ``perplexity`` is ``exp(mean negative log-likelihood per token)``. Bad
input (lengths that differ, nothing to score) is a ValueError naming the argument.
"""

from __future__ import annotations

import math
from collections import Counter


def _check(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references: lengths differ ({len(predictions)} predictions, "
            f"{len(references)} references)"
        )
    if len(predictions) == 0:
        raise ValueError("predictions: empty, nothing to score")


def _check_texts(predictions, references) -> None:
    _check(predictions, references)
    for name, values in (("predictions", predictions), ("references", references)):
        for index, value in enumerate(values):
            if not isinstance(value, str):
                kind = type(value).__name__
                raise ValueError(f"{name}[{index}]: expected a str, got {kind}")


def accuracy(predictions, references) -> float:
    """Fraction of predictions equal to their reference."""
    _check(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def macro_f1(predictions, references) -> float:
    """Unweighted mean of the per-label F1 over every label that occurs in predictions or
    references (a label with no true and no predicted instance has no F1 and is skipped; a
    label never predicted, or never correctly, scores 0), as scikit-learn's
    ``f1_score(average="macro")``."""
    _check(predictions, references)
    true_positive, false_positive, false_negative = Counter(), Counter(), Counter()
    for predicted, reference in zip(predictions, references):
        if predicted == reference:
            true_positive[predicted] += 1
        else:
            false_positive[predicted] += 1
            false_negative[reference] += 1
    scores = []
    for label in set(predictions) | set(references):
        # F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN): defined even when P or R is 0/0.
        denominator = 2 * true_positive[label] + false_positive[label] + false_negative[label]
        if denominator:
            scores.append(2 * true_positive[label] / denominator)
    return sum(scores) / len(scores)


def confusion_matrix(predictions, references, labels) -> list[list[int]]:
    """``counts[i][j]``: examples of true label ``labels[i]`` predicted as ``labels[j]``, as
    scikit-learn's ``confusion_matrix(references, predictions, labels=labels)``. Labels are
    anything hashable (class names, class numbers); one outside ``labels`` is a ValueError."""
    _check(predictions, references)
    labels = list(labels)
    repeated = [label for label, count in Counter(labels).items() if count > 1]
    if repeated:  # the table would have two rows for it and count it in one
        raise ValueError(f"labels: each label once, got {repeated[0]!r} more than once")
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(index) for _ in index]
    for position, (predicted, reference) in enumerate(zip(predictions, references)):
        for name, label in (("predictions", predicted), ("references", reference)):
            if label not in index:
                raise ValueError(f"{name}[{position}]: {label!r} is not one of the labels")
        counts[index[reference]][index[predicted]] += 1
    return counts


def exact_match(predictions, references) -> float:
    """Fraction of predictions equal to their reference after stripping surrounding space."""
    _check_texts(predictions, references)
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def _sacrebleu():
    try:
        import sacrebleu  # lazy: only translation needs it, and it is an optional dependency
    except ImportError:
        raise ImportError(
            "BLEU and chrF need sacrebleu: pip install atenea[train] (or pip install sacrebleu)"
        ) from None
    return sacrebleu


def bleu(predictions, references) -> float:
    """sacrebleu's corpus BLEU (0..100) of the predictions against one reference each."""
    _check_texts(predictions, references)
    return float(_sacrebleu().corpus_bleu(list(predictions), [list(references)]).score)


def chrf(predictions, references) -> float:
    """sacrebleu's corpus chrF (0..100) of the predictions against one reference each."""
    _check_texts(predictions, references)
    return float(_sacrebleu().corpus_chrf(list(predictions), [list(references)]).score)


def perplexity(total_nll, total_tokens) -> float:
    """``exp(total_nll / total_tokens)``: the exponentiated mean negative log-likelihood per
    token (nats); ``inf`` when it overflows a float.

    Args:
        total_nll: summed negative log-likelihood over the tokens (float or 0-d tensor).
        total_tokens: how many tokens were scored (> 0).
    """
    count = float(total_tokens)  # an int or a 0-d tensor
    if not count.is_integer() or count <= 0:  # int() would make 2.7 tokens 2, 0.5 none
        raise ValueError(f"total_tokens: expected a positive count, got {total_tokens!r}")
    total_tokens = int(count)
    mean = float(total_nll) / total_tokens
    try:
        return math.exp(mean)
    except OverflowError:
        return float("inf")
