"""What ``atenea evaluate`` prints and writes beside the metrics: the per-class table, the
confusion matrix (as text; its picture is ``inspect.plots.confusion_png``), the notes, and
the per-example predictions."""

from __future__ import annotations

import csv
from pathlib import Path


def print_evaluation(result) -> None:
    """The metrics (the main one marked), then for a classifier the per-class table and the
    confusion matrix, then the notes."""
    width = max(len(k) for k in result.metrics)
    for name, value in result.metrics.items():
        marker = "  (main)" if name == result.main_metric else ""
        print(f"{name:<{width}}  {value:.4f}{marker}")
    if result.classes:
        names = [row["label"] for row in result.classes]
        first = max(len("label"), *(len(n) for n in names))
        print(f"\n{'label':<{first}}  precision  recall  f1      support")
        for row in result.classes:
            print(f"{row['label']:<{first}}  {row['precision']:<9.4f}  {row['recall']:<6.4f}  "
                  f"{row['f1']:<6.4f}  {row['support']}")  # fmt: skip
        print("\nconfusion matrix (rows: true label, columns: predicted)")
        cell = max(5, *(len(n) for n in result.labels))
        print(" " * first + "".join(f"  {n:>{cell}}" for n in result.labels))
        for name, counts in zip(result.labels, result.confusion):
            print(f"{name:<{first}}" + "".join(f"  {c:>{cell}}" for c in counts))
    if result.notes:
        print()
    for note in result.notes:
        print(f"note: {note}")


def write_predictions(rows: list[dict], path: Path) -> Path:
    """``input, reference, prediction, correct`` per example, as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "reference", "prediction", "correct"])
        for row in rows:
            correct = row["prediction"].strip() == row["reference"].strip()
            writer.writerow([row["input"], row["reference"], row["prediction"], int(correct)])
    return path
