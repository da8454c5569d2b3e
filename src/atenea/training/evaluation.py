"""An evaluation worth reading: the metrics of ``atenea evaluate`` with what is behind them.

    result = evaluate_folder("runs/reviews", data="more.csv")
    result.metrics        {"accuracy": ..., "macro_f1": ...}, as the task's own evaluation
    result.classes        per label: precision, recall, F1, support (classify)
    result.confusion      counts, rows = true label, columns = predicted label (classify,
                          images)
    result.unseen         {label: count} of labels in the data the model never learned
    result.rows           one {"input", "reference", "prediction"} per example
    result.notes          what a reader should know (e.g. why BLEU says little here)

Classify and translate are scored from the model's predictions on the raw examples (the same
tokenization, batches and greedy decoding as the task's evaluation, so the numbers are the
ones training logged); a label the model never saw is counted (it can only be predicted wrong)
instead of stopping the evaluation. lm and mlm keep the task's own evaluation (perplexity).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from atenea.training import metrics
from atenea.training.predict import Predictor
from atenea.training.tasks import from_description, read_description
from atenea.training.tasks.build import read_examples
from atenea.training.tasks.translate import translation_metrics

# BLEU's geometric mean needs 1- to 4-gram matches: below this many words a reference has no
# 4-gram, and BLEU is 0 (or smoothed to a number with no meaning) however good the output.
BLEU_WORDS = 4


@dataclass
class Evaluation:
    task: str
    main_metric: str
    metrics: dict[str, float]
    classes: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the confusion matrix's rows and columns
    confusion: list[list[int]] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def per_class(predictions: list[str], references: list[str], labels: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each label (``labels`` first, then any other
    reference label, which no prediction can match), as scikit-learn's
    ``classification_report`` (0 where a ratio is 0/0)."""
    names = list(labels) + sorted(set(references) - set(labels))
    true_positive = Counter(p for p, r in zip(predictions, references) if p == r)
    predicted, actual = Counter(predictions), Counter(references)
    report = []
    for name in names:
        tp = true_positive[name]
        precision = tp / predicted[name] if predicted[name] else 0.0
        recall = tp / actual[name] if actual[name] else 0.0
        f1 = 2 * tp / (predicted[name] + actual[name]) if predicted[name] + actual[name] else 0.0
        report.append({"label": name, "precision": precision, "recall": recall, "f1": f1,
                       "support": actual[name]})  # fmt: skip
    return report


def evaluate_folder(
    folder, data=None, columns: dict | None = None, limit: int | None = None, device=None,
    progress: bool = False,
):  # fmt: skip
    """Score a model folder written by ``atenea train`` on ``data`` (default: its own held-out
    split); ``columns`` names the data's columns (``{"text": ..., "label": ...}``); the model
    runs on ``device`` (default: the CPU); ``progress``: a bar while classify and translate
    predict (on a terminal)."""
    folder = Path(folder)
    info = read_description(folder)
    task = info["task"]
    main = info.get("main_metric", "")
    if task not in ("classify", "translate"):
        return _task_evaluation(folder, info, data, limit, device)
    examples = read_examples(info, folder, data, columns).validation[:limit]
    predictor = Predictor.from_folder(folder, device=device)
    if task == "classify":
        texts, references = [e["text"] for e in examples], [e["label"] for e in examples]
        predictions = [r["prediction"] for r in predictor.predict(texts, progress)]
        labels = list(predictor.labels or [])
        unseen = Counter(r for r in references if r not in labels)
        names = labels + sorted(unseen)
        result = Evaluation(
            task, main,
            {"accuracy": metrics.accuracy(predictions, references),
             "macro_f1": metrics.macro_f1(predictions, references)},
            classes=per_class(predictions, references, labels), labels=names,
            confusion=metrics.confusion_matrix(predictions, references, names), unseen=dict(unseen),
        )  # fmt: skip
        if unseen:
            shown = ", ".join(f"{label!r} x{count}" for label, count in sorted(unseen.items()))
            result.notes.append(
                f"{sum(unseen.values())} of {len(references)} examples have labels the model "
                f"never learned ({shown}): counted as errors"
            )
    else:
        texts = [e["source"] for e in examples]
        references = [e["target"].strip() for e in examples]
        predictions = [r["prediction"] for r in predictor.predict(texts, progress)]
        result = Evaluation(task, main, translation_metrics(predictions, references))
        short = sum(len(r.split()) < BLEU_WORDS for r in references)
        if short * 2 > len(references):
            result.metrics = {k: result.metrics[k] for k in ("exact_match", "chrf", "bleu")}
            result.notes.append(
                f"{short} of {len(references)} references have fewer than {BLEU_WORDS} words, so "
                f"BLEU (a mean over 1- to 4-gram matches) has no 4-grams to count and says "
                f"little; read exact_match and chrF (character n-grams) first"
            )
    result.rows = [{"input": t, "reference": r, "prediction": p}
                   for t, r, p in zip(texts, references, predictions)]  # fmt: skip
    return result


def _task_evaluation(folder: Path, info: dict, data, limit, device=None) -> Evaluation:
    from atenea.models import load_pretrained

    task = from_description(info, folder, data=data)
    model, _ = load_pretrained(folder)
    if device is not None:
        model.to(device)
    if info["task"] == "images":
        return _image_evaluation(task, model, limit)
    return Evaluation(info["task"], task.main_metric, task.evaluate(model, limit=limit))


def _image_evaluation(task, model, limit) -> Evaluation:
    """An image classifier: the task's own metrics from one pass over the validation images,
    with the per-class report and the confusion matrix (classes by name)."""
    predicted, true = task.predict(model, limit)
    names = list(task.info["labels"])
    predictions, references = [names[i] for i in predicted], [names[i] for i in true]
    scores = {"accuracy": metrics.accuracy(predicted, true),
              "macro_f1": metrics.macro_f1(predicted, true)}  # as task.evaluate  # fmt: skip
    return Evaluation(
        "images", task.main_metric, scores, classes=per_class(predictions, references, names),
        labels=names, confusion=metrics.confusion_matrix(predictions, references, names),
    )  # fmt: skip
