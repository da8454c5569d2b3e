"""``metrics.jsonl``: the record of a run, one JSON object a line.

    {"step": 12, "loss": 2.31, "lr": 0.002, "grad_norm": 0.8, "tokens_per_s": 5400.0,
     "tokens": 2048, "epoch": 0}                       one a training step
    {"step": 12, "eval": {"perplexity": 9.1, ...}}     one an evaluation

The loop writes it and draws nothing; ``read_metrics`` gives the records back to whoever draws
the curves (``atenea train`` writes ``curves.png`` with ``atenea.inspect.plots``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

METRICS = "metrics.jsonl"


class MetricsLog:
    """``metrics.jsonl``: records buffered and appended in batches (``flush``). Only rank 0
    keeps one; the other ranks get ``enabled=False`` and write nothing."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.pending = path, enabled, []

    def add(self, entry: dict) -> None:
        if self.enabled:
            self.pending.append(json.dumps(entry))

    def flush(self) -> None:
        if self.enabled and self.pending:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(self.pending) + "\n")
            self.pending = []

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` (from a run that went on past its last
        checkpoint), so the file reads as one run after a resume."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _step_of(line) <= step
        ]
        temporary = self.path.with_name(self.path.name + ".writing")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, self.path)

    def evaluation_at(self, step: int) -> dict | None:
        """The metrics of an evaluation logged at ``step``, if the log has one."""
        if not self.enabled:
            return None
        found = [
            r["eval"]
            for r in read_metrics(self.path.parent)
            if r.get("step") == step and "eval" in r
        ]
        return found[-1] if found else None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 1 << 62  # an unreadable (half-written) line: drop it


def read_metrics(folder) -> list[dict]:
    """The records of ``folder/metrics.jsonl`` (training and ``{"step", "eval"}`` records)."""
    path = Path(folder) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
