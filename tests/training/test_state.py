import json
import random
import shutil

import numpy as np
import pytest
import torch

from atenea.models import CheckpointError, load_pretrained
from atenea.models.pretrained import read_tensor_file
from atenea.training.schedule import make_optimizer, make_scheduler
from atenea.training.state import (
    TrainingState,
    latest_checkpoint,
    load_training_state,
    save_checkpoint,
)

from .toy import ToyTask


def _trained(steps=3, seed=0):
    """A toy model, its optimizer and scheduler after ``steps`` real training steps."""
    task = ToyTask(seed=seed)
    model = task.build_model()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    scheduler = make_scheduler(optimizer, warmup_steps=2, total_steps=10)
    for step in range(steps):
        batch = task.batch(list(range(4 * step, 4 * step + 4)), torch.Generator().manual_seed(step))
        task.loss(model, batch).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return task, model, optimizer, scheduler


def _save(root, step, model, optimizer, scheduler, keep=2, task=None):
    state = TrainingState(step, epoch=1, position=step, config={"seed": 0, "lr": 0.01},
                          optimizer=optimizer, scheduler=scheduler)  # fmt: skip
    info = (task or ToyTask()).describe()
    return save_checkpoint(root, step, model, None, info, state, keep=keep)


def test_round_trip_restores_everything_exactly(tmp_path):
    task, model, optimizer, scheduler = _trained()
    folder = _save(tmp_path, 3, model, optimizer, scheduler, task=task)
    assert folder == tmp_path / "checkpoints" / "checkpoint-000003"
    assert sorted(p.name for p in folder.iterdir()) == [
        "COMPLETE", "config.json", "model.safetensors", "task.json", "training_state.json",
        "training_state.safetensors",
    ]  # fmt: skip
    # What the RNGs give next, right after the save...
    expected_draws = (torch.rand(5), random.random(), np.random.rand(3))

    # ... a differently initialized model and a fresh optimizer get it all back.
    _, other, other_optimizer, other_scheduler = _trained(steps=0, seed=7)
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    state = load_training_state(folder, other, other_optimizer, other_scheduler)
    assert (state.step, state.epoch, state.position) == (3, 1, 3)
    assert state.config == {"seed": 0, "lr": 0.01}
    assert torch.equal(torch.rand(5), expected_draws[0])
    assert random.random() == expected_draws[1]
    assert np.array_equal(np.random.rand(3), expected_draws[2])

    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    saved, restored = optimizer.state_dict(), other_optimizer.state_dict()
    assert restored["param_groups"] == saved["param_groups"]
    assert saved["state"].keys() == restored["state"].keys() and len(saved["state"]) > 10
    for index, entries in saved["state"].items():
        for key, value in entries.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)
    assert other_scheduler.state_dict() == scheduler.state_dict()
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_every_ranks_rng_and_task_state_round_trip(tmp_path):
    """Per rank tensors are saved as ``rng.rank.{rank}.*`` and ``task.{rank}.*`` (names.py) and
    come back by rank; a rank that saved no task state comes back empty."""
    _, model, optimizer, scheduler = _trained(steps=1)
    rank_rng = [{"torch": torch.arange(3, dtype=torch.uint8) + r} for r in range(2)]
    task_state = [
        {"memory.0.stream": torch.tensor([0])},
        {},
        {"memory.0.stream": torch.tensor([4]), "memory.1.layer.0.keys": torch.ones(2)},
    ]
    state = TrainingState(2, optimizer=optimizer, scheduler=scheduler, rank_rng=rank_rng,
                          task_state=task_state)  # fmt: skip
    folder = save_checkpoint(tmp_path, 2, model, None, {}, state)
    names = set(read_tensor_file(folder / "training_state.safetensors"))
    assert {"rng.rank.1.torch", "task.0.memory.0.stream", "task.2.memory.1.layer.0.keys"} <= names
    assert not any(name.startswith("task.1.") for name in names)
    loaded = load_training_state(folder, model, optimizer, scheduler)
    for saved, back in ((rank_rng, loaded.rank_rng), (task_state, loaded.task_state)):
        assert [sorted(d) for d in back] == [sorted(d) for d in saved]
        assert all(torch.equal(back[r][k], t) for r, d in enumerate(saved) for k, t in d.items())


def test_checkpoint_is_a_model_folder(tmp_path):
    task, model, optimizer, scheduler = _trained(steps=1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler, task=task)
    loaded, _ = load_pretrained(folder)
    assert torch.equal(loaded.output_weight, model.output_weight)
    assert json.loads((folder / "task.json").read_text()) == task.describe()


def test_keeps_the_last_two_and_ignores_incomplete_folders(tmp_path):
    _, model, optimizer, scheduler = _trained(steps=1)
    assert latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        _save(tmp_path, step, model, optimizer, scheduler)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "checkpoint-000002",
        "checkpoint-000003",
    ]
    assert latest_checkpoint(tmp_path) == checkpoints / "checkpoint-000003"

    # A save killed before its rename, and one killed before its COMPLETE marker.
    shutil.copytree(checkpoints / "checkpoint-000003", checkpoints / "checkpoint-000005.tmp")
    shutil.copytree(checkpoints / "checkpoint-000003", checkpoints / "checkpoint-000009")
    (checkpoints / "checkpoint-000009" / "COMPLETE").unlink()
    assert latest_checkpoint(tmp_path) == checkpoints / "checkpoint-000003"
    with pytest.raises(CheckpointError, match="checkpoint-000009: incomplete"):
        load_training_state(checkpoints / "checkpoint-000009", model, optimizer, scheduler)

    # The next save cleans them up, and keep=1 keeps only itself.
    _save(tmp_path, 4, model, optimizer, scheduler, keep=1)
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint-000004"]


def test_a_save_over_a_half_written_folder_of_the_same_step(tmp_path):
    _, model, optimizer, scheduler = _trained(steps=1)
    stale = tmp_path / "checkpoints" / "checkpoint-000002"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    folder = _save(tmp_path, 2, model, optimizer, scheduler)
    assert folder == stale and (folder / "COMPLETE").is_file()
    load_training_state(folder, model, optimizer, scheduler)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "training_state.safetensors").write_bytes(b"\x00" * 20),
         "training_state.safetensors: not a readable safetensors file"),
        (lambda f: (f / "training_state.safetensors").unlink(),
         "training_state.safetensors: missing"),
        (lambda f: (f / "training_state.json").write_text("{\"step\": 3, "),
         "training_state.json: invalid JSON"),
        (lambda f: (f / "training_state.json").write_text("{\"step\": 3}"),
         r"training_state.json: missing entries \['epoch'"),
        (lambda f: (f / "model.safetensors").write_bytes(b"junk"),
         "model.safetensors: not a readable safetensors file"),
    ],
)  # fmt: skip
def test_corrupt_state_is_a_clear_error(tmp_path, damage, message):
    _, model, optimizer, scheduler = _trained(steps=1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_training_state(folder, model, optimizer, scheduler)


def test_optimizer_of_another_model_is_refused(tmp_path):
    _, model, optimizer, scheduler = _trained(steps=1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    model.layers[0].attention.requires_grad_(False)  # fewer trainable tensors
    other_optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    other_scheduler = make_scheduler(other_optimizer, 2, 10)
    with pytest.raises(CheckpointError, match="training_state.json: the optimizer state has"):
        load_training_state(folder, model, other_optimizer, other_scheduler)


def test_save_needs_optimizer_and_scheduler(tmp_path):
    _, model, _, _ = _trained(steps=0)
    with pytest.raises(ValueError, match="state.optimizer"):
        save_checkpoint(tmp_path, 1, model, None, {}, TrainingState(1))
