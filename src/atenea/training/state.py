"""The state of a training run: a model folder plus everything an exact resume needs (optimizer,
scheduler, RNG states, where the run stands), written atomically as a checkpoint folder.

    root/checkpoints/checkpoint-000200/
        config.json model.safetensors [tokenizer.json ...] task.json    (a model folder)
        training_state.safetensors   optimizer tensors, RNG states (uint8 tensors), the task's
                                     carried state (task.{rank}.*: lm_carry.py's memories)
        training_state.json          step, epoch, position, run config, optimizer hyper-parameters,
                                     scheduler state, Python's and numpy's RNG states
        COMPLETE                     written last

A checkpoint is written into ``checkpoint-000200.tmp/``, flushed to disk, renamed to
``checkpoint-000200/``, and only then gets ``COMPLETE``; ``latest_checkpoint`` never returns a
folder without it, so a run killed in the middle of a save resumes from the previous one.
Nothing is pickled: the optimizer's state dict is flattened into named tensors
(``optimizer.state.<param index>.<key>``) plus JSON for its scalars.

The model folder itself is written and read by ``atenea.models``; this module adds the run's
state beside it, and chooses, rotates and restores the checkpoints of a run.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from atenea.models.pretrained import (
    CheckpointError,
    load_weights,
    read_json_object,
    read_tensor_file,
)
from atenea.models.pretrained import save_pretrained as _save_pretrained
from atenea.training.names import group_by_index, indexed_name

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
COMPLETE = "COMPLETE"
FORMAT_VERSION = 1
_NAME = re.compile(r"checkpoint-(\d+)")
# Prefixes of the tensors saved once per rank or per parameter: ``{prefix}.{index}.{name}``.
RANK_RNG, TASK, OPTIMIZER = "rng.rank", "task", "optimizer.state"

__all__ = [
    "CheckpointError",
    "TrainingState",
    "latest_checkpoint",
    "load_training_state",
    "save_checkpoint",
    "write_model",
]


@dataclass
class TrainingState:
    """Where a run stands after ``step`` optimizer steps.

    ``epoch``: the current epoch (0-based); ``position``: global batches consumed in it;
    ``config``: the run's configuration as JSON (checked on resume). ``optimizer`` and
    ``scheduler`` are the live objects whose state is saved with the checkpoint (and into which
    ``load_training_state`` restored it). The process's RNG states are not fields:
    ``save_checkpoint`` reads the generators (torch CPU and CUDA, Python's ``random``, numpy)
    when it writes, and ``load_training_state`` sets them back. Under DDP, rank 0 writes, so
    ``rank_rng`` carries every rank's torch states (``{"torch": uint8 tensor, "cuda": ...}`` by
    rank) for each rank to take back its own (``restore_rank_rng``). The task's batch generators
    need no saving: each is seeded from the step number.
    """

    step: int
    epoch: int = 0
    position: int = 0
    config: dict = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    rank_rng: list[dict[str, torch.Tensor]] = field(default_factory=list)
    # What the task carries from step to step (the carried memories of tasks/lm_carry.py), by
    # rank: ``task.train_state()`` of each; saved as ``task.{rank}.{name}`` tensors.
    task_state: list[dict[str, torch.Tensor]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_model(folder, model: nn.Module, tokenizer, task_info: dict) -> Path:
    """Write a model folder: ``config.json``, ``model.safetensors``, the tokenizer (if any) and
    ``task.json`` (``task_info``, what the task needs to be rebuilt). Returns the folder."""
    folder = Path(folder)
    _save_pretrained(model, folder, tokenizer)
    _write_json(folder / "task.json", task_info)
    return folder


def _write_json(path: Path, value) -> None:
    try:
        text = json.dumps(value, indent=2, allow_nan=True) + "\n"
    except TypeError as error:
        raise TypeError(f"{path.name}: the value is not JSON-serializable ({error})") from None
    temporary = path.with_name(path.name + ".writing")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's state dict as ``(named tensors, JSON)``: no pickle, nothing lost."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[indexed_name(OPTIMIZER, index, key)] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, rng


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (a rename is only durable once both are)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # some platforms cannot open folders; the data files were synced already
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def checkpoint_dir(root, step: int) -> Path:
    return Path(root) / "checkpoints" / f"checkpoint-{step:06d}"


def save_checkpoint(
    root,
    step: int,
    model: nn.Module,
    tokenizer,
    task_info: dict,
    state: TrainingState,
    keep: int = 2,
) -> Path:
    """Write ``root/checkpoints/checkpoint-{step:06d}/`` atomically and keep the newest ``keep``
    complete checkpoints (older ones and stale ``*.tmp`` / incomplete folders are deleted).

    ``model`` is the plain model (not a DDP wrapper); ``state.optimizer`` and
    ``state.scheduler`` must be set. Returns the checkpoint folder.
    """
    if keep < 1:
        raise ValueError(f"keep: expected at least 1 checkpoint to keep, got {keep}")
    if state.optimizer is None or state.scheduler is None:
        raise ValueError("state: save_checkpoint needs state.optimizer and state.scheduler")
    final = checkpoint_dir(root, step)
    temporary = final.with_name(final.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)

    write_model(temporary, model, tokenizer, task_info)
    optimizer_tensors, optimizer_json = _optimizer_state(state.optimizer)
    rng_tensors, rng_json = _rng_state()
    for rank, states in enumerate(state.rank_rng):
        rng_tensors.update({indexed_name(RANK_RNG, rank, kind): t for kind, t in states.items()})
    for rank, tensors in enumerate(state.task_state):
        rng_tensors.update({indexed_name(TASK, rank, name): t for name, t in tensors.items()})
    save_file(
        {
            name: t.detach().cpu().contiguous()
            for name, t in {**optimizer_tensors, **rng_tensors}.items()
        },
        str(temporary / STATE_TENSORS),
        metadata={"format": "pt"},
    )
    _write_json(
        temporary / STATE_JSON,
        {
            "format": FORMAT_VERSION,
            "step": step,
            "epoch": state.epoch,
            "position": state.position,
            "config": state.config,
            "optimizer": optimizer_json,
            "scheduler": state.scheduler.state_dict(),
            "rng": rng_json,
        },
    )
    for path in temporary.iterdir():
        _fsync(path)
    _fsync(temporary)

    if final.exists():  # a half-written save of this step from a killed run: never complete
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync(final.parent)
    _mark_complete(final, step)
    _rotate(final.parent, keep, current=final)
    return final


def _mark_complete(folder: Path, step: int) -> None:
    """Write ``COMPLETE``, the last file of a save: from here on the checkpoint may be loaded."""
    (folder / COMPLETE).write_text(f"{step}\n", encoding="utf-8")
    _fsync(folder / COMPLETE)
    _fsync(folder)


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-N`` folder (complete or not), oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _rotate(folder: Path, keep: int, current: Path) -> None:
    complete = [path for _, path in _checkpoints(folder) if (path / COMPLETE).is_file()]
    doomed = complete[:-keep] if len(complete) > keep else []
    doomed += [p for p in folder.glob("checkpoint-*.tmp") if p.is_dir()]
    doomed += [
        path
        for _, path in _checkpoints(folder)
        if path != current and not (path / COMPLETE).is_file()
    ]
    for path in doomed:
        if path != current:
            shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(root) -> Path | None:
    """The newest complete checkpoint under ``root/checkpoints`` (a folder named
    ``checkpoint-N`` holding ``COMPLETE``), or None. ``*.tmp`` and incomplete folders are never
    returned."""
    complete = [
        path for _, path in _checkpoints(Path(root) / "checkpoints") if (path / COMPLETE).is_file()
    ]
    return complete[-1] if complete else None


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_state_json(path: Path) -> dict:
    value = read_json_object(path, "missing (not a training checkpoint?)")
    required = ("step", "epoch", "position", "config", "optimizer", "scheduler", "rng")
    missing = [key for key in required if key not in value]
    if missing:
        raise CheckpointError(f"{path}: missing entries {missing}")
    if value.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format {value.get('format')!r}, this atenea reads format {FORMAT_VERSION}"
        )
    return value


def _read_state_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a training checkpoint?)")
    return read_tensor_file(path)


def _restore_optimizer(optimizer, saved: dict, tensors: dict, source: Path) -> None:
    state: dict[int, dict] = group_by_index(OPTIMIZER, tensors)
    for index, entries in saved.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = saved["param_groups"]
    current = optimizer.state_dict()["param_groups"]
    if len(groups) != len(current) or any(
        len(g["params"]) != len(c["params"]) for g, c in zip(groups, current)
    ):
        raise CheckpointError(
            f"{source}: the optimizer state has groups of {[len(g['params']) for g in groups]} "
            f"parameters, this model's optimizer {[len(c['params']) for c in current]}: a "
            f"different model or optimizer?"
        )
    for group, now in zip(groups, current):  # JSON turned tuples (AdamW's betas) into lists
        for key, value in now.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
        for key in ("fused", "foreach", "capturable"):  # how this device updates, not a setting
            if key in now:
                group[key] = now[key]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{source}: cannot restore the optimizer ({error})") from None


def _restore_rng(rng: dict, tensors: dict, source: Path) -> None:
    try:
        torch.set_rng_state(tensors["rng.torch"])
        cuda_names = [k for k in tensors if k.startswith("rng.cuda.")]
        cuda = [tensors[k] for k in sorted(cuda_names, key=lambda k: int(k.rsplit(".", 1)[1]))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{source}: invalid random-number-generator state ({error})"
        ) from None


def load_training_state(folder, model: nn.Module, optimizer, scheduler) -> TrainingState:
    """Restore a checkpoint folder into ``model`` (weights), ``optimizer``, ``scheduler`` and
    the process's RNGs. Returns its ``TrainingState`` (with ``optimizer``/``scheduler`` set).

    Raises ``CheckpointError`` (a ``ValueError``) naming the file when the folder is incomplete
    or a file is missing or corrupt.
    """
    folder = Path(folder)
    if not (folder / COMPLETE).is_file():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {COMPLETE} marker)")
    saved = _read_state_json(folder / STATE_JSON)
    tensors = _read_state_tensors(folder / STATE_TENSORS)
    load_weights(folder, model)
    _restore_optimizer(optimizer, saved["optimizer"], tensors, folder / STATE_JSON)
    try:
        scheduler.load_state_dict(saved["scheduler"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{folder / STATE_JSON}: cannot restore the scheduler ({error})"
        ) from None
    _restore_rng(saved["rng"], tensors, folder / STATE_JSON)
    return TrainingState(
        step=int(saved["step"]),
        epoch=int(saved["epoch"]),
        position=int(saved["position"]),
        config=saved["config"],
        optimizer=optimizer,
        scheduler=scheduler,
        rank_rng=_by_rank(RANK_RNG, tensors),
        task_state=_by_rank(TASK, tensors),
    )


def _by_rank(prefix: str, tensors: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The tensors named ``{prefix}.{rank}.{name}`` as one ``{name: tensor}`` per rank, ranks
    0 up to the highest saved (a rank that saved nothing gets {})."""
    ranks = group_by_index(prefix, tensors)
    return [ranks.get(rank, {}) for rank in range(max(ranks, default=-1) + 1)]


def restore_rank_rng(state: TrainingState, rank: int, world_size: int) -> bool:
    """Under DDP: set this rank's torch RNGs to the ones it saved (``state.rank_rng[rank]``).
    False (nothing changed) when the checkpoint was written by a different number of ranks."""
    if len(state.rank_rng) != world_size or world_size < 2:
        return False
    states = state.rank_rng[rank]
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    return True
