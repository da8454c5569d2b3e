"""The settings of one training run (``TrainConfig``) and the error of a run that cannot go on.

A run's settings are checked before anything is built (``TrainConfig.check``) and travel with
every checkpoint; ``--resume`` / ``train(..., resume=True)`` refuses a changed setting that
decides batches, schedule or random numbers (``check_resume``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

# Saved run settings that must not change on resume: they decide batches, schedule and RNG.
# ``steps`` may grow on resume (``check_resume``): the schedule then continues as if the run had
# been started with the new number (``schedule.refresh_learning_rates``).
RESUME_FIELDS = ("batch_size", "accumulation", "seed", "lr", "warmup", "weight_decay")


class TrainingError(RuntimeError):
    """A run that cannot go on: non-finite loss or gradient, nothing or the wrong thing to
    resume from. The message says which step and where the last good checkpoint is."""


@dataclass
class TrainConfig:
    """Settings of one run (saved with every checkpoint).

    output: the folder that becomes the trained model folder (plus metrics.jsonl and
        checkpoints/).
    steps: optimizer steps in the whole run (the schedule spans them).
    batch_size: examples per micro-batch (over all ranks under DDP; divisible by the world
        size); accumulation: micro-batches per optimizer step.
    warmup: linear-warmup steps; clip: maximum gradient norm (0 or None: no clipping).
    eval_every / save_every: evaluation and checkpoint intervals in steps (0: only at the end);
        eval_limit: evaluate on at most this many validation examples.
    bf16: autocast the forward to bfloat16 (parameters and optimizer stay float32).
    compile: run the training steps through ``torch.compile`` (the saved model is the plain
        one; evaluation runs eagerly).
    fsdp: shard the model, gradients and optimizer over the ranks (FSDP2) instead of copying
        them to every rank (DDP); needs several processes (``torchrun``).
    keep: complete checkpoints kept. progress: a tqdm bar on rank 0.
    save_minutes: also checkpoint after this many minutes of training since the last save
        (None or 0: only on ``save_every``); Ctrl-C / SIGTERM always save (``interrupt.py``).
    stop_at: stop early after this many steps, with a checkpoint (for tests and time limits);
        the schedule still spans ``steps`` and ``train(..., resume=True)`` goes on from there.

    Errors name a setting as ``TrainConfig.<field>``, so a front end can tell which of its
    options set it.
    """

    output: Path
    steps: int = 1000
    batch_size: int = 32
    accumulation: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    clip: float | None = 1.0
    eval_every: int = 200
    save_every: int = 200
    eval_limit: int | None = None
    seed: int = 0
    bf16: bool = False
    compile: bool = False
    fsdp: bool = False
    keep: int = 2
    progress: bool = True
    stop_at: int | None = None
    save_minutes: float | None = 10.0

    def to_json(self) -> dict:
        values = dataclasses.asdict(self)
        values["output"] = str(self.output)
        return values

    def check(self, world_size: int = 1, distributed: bool | None = None) -> None:
        """Raise ValueError naming the first setting a run of ``world_size`` processes cannot
        use; ``distributed``: whether they form a process group (``False`` refuses ``fsdp``)."""
        for name in ("steps", "batch_size", "accumulation", "keep"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {value!r}")
        for name in ("warmup", "eval_every", "save_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name}: expected an integer >= 0, got {value!r}")
        for name, zero_allowed in (("lr", False), ("weight_decay", True)):
            value = getattr(self, name)
            if not (_finite(value) and (value >= 0 if zero_allowed else value > 0)):
                low = ">= 0" if zero_allowed else "> 0"
                raise ValueError(
                    f"TrainConfig.{name}: expected a finite number {low}, got {value!r}"
                )
        if self.clip is not None and not (_finite(self.clip) and self.clip >= 0):
            # a negative max_norm turns every gradient around: the run would climb its loss
            raise ValueError(
                f"TrainConfig.clip: expected None, 0 (no clipping) or a positive gradient norm, "
                f"got {self.clip!r}"
            )
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise ValueError(
                f"TrainConfig.stop_at: expected 1..steps={self.steps}, got {self.stop_at}"
            )
        if self.save_minutes is not None and not self.save_minutes >= 0:
            raise ValueError(
                f"TrainConfig.save_minutes: expected None or >= 0, got {self.save_minutes}"
            )
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(
                f"TrainConfig.eval_limit: expected None or >= 1, got {self.eval_limit}"
            )
        if self.fsdp and distributed is False:
            raise ValueError(
                "TrainConfig.fsdp: shards the model over the processes of a group, and there is "
                "none; launch with torchrun --nproc_per_node=N (or drop it)"
            )
        if self.batch_size % world_size:
            raise ValueError(
                f"TrainConfig.batch_size: {self.batch_size} does not divide among {world_size} "
                f"processes; use a multiple of {world_size}"
            )


def _finite(value) -> bool:
    """A real number (not a bool, NaN or infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_resume(saved: dict, config: TrainConfig, folder: Path) -> None:
    """Raise TrainingError when ``config`` changes a setting the saved run (``saved``, its
    ``to_json()``) fixed; ``folder`` is the checkpoint, for the message."""
    now = config.to_json()
    changed = [
        f"{name}: {saved.get(name)!r} -> {now[name]!r}"
        for name in RESUME_FIELDS
        if saved.get(name) != now[name]
    ]
    if isinstance(saved.get("steps"), int) and now["steps"] < saved["steps"]:
        changed.append(f"steps: {saved['steps']!r} -> {now['steps']!r}, but steps may only grow")
    if changed:
        raise TrainingError(
            f"cannot resume from {folder}: the run was started with other settings "
            f"({'; '.join(changed)}); resume with the original settings or start a new output "
            f"folder"
        )
