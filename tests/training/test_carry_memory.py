"""lm with the memory carried from step to step (``carry_memory``, tasks/lm_carry.py): the
loop's losses equal the streams run by hand, documents reset the memory across a step, a
resumed run equals an uninterrupted one, and DDP keeps each rank's streams apart."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from atenea.models.pretrained import read_tensor_file
from atenea.training import distributed
from atenea.training.data import Split
from atenea.training.loop import TrainConfig, _to_device, train
from atenea.training.schedule import make_optimizer, make_scheduler
from atenea.training.state import latest_checkpoint
from atenea.training.tasks import build_task
from atenea.training.tasks.settings import TaskError
from tests.helpers import losses, torchrun
from tests.helpers import random_texts as texts

SEGMENT, MEMORY = 12, 24
# 2 streams a step; the text makes 8 segments a stream, so 12 steps cross an epoch.
SETTINGS = dict(steps=12, batch_size=2, lr=3e-3, warmup=2, eval_every=0, seed=7, progress=False)


def carried_task(dropout: float = 0.0, **options):
    overrides = {"segment": SEGMENT, "memory_len": MEMORY, "carry_memory": "true", "dim": 24,
                 "num_layers": 2, "num_heads": 2, "ffn_hidden": 48, "dropout": dropout,
                 **options}  # fmt: skip
    task = build_task("lm", data=Split(texts(8, 1, words=10), texts(3, 2)), vocab_size=280,
                      overrides={k: str(v) for k, v in overrides.items()})  # fmt: skip
    torch.manual_seed(0)
    return task, task.build_model()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output = tmp_path_factory.mktemp("carry")
    task, model = carried_task()
    start = copy.deepcopy(model)
    # A module fixture runs before the per-test one-thread fixture (conftest): one thread here
    # too, or the sums of the gradients round differently from the tests' runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(task, model, TrainConfig(output=output, **SETTINGS))
    finally:
        torch.set_num_threads(threads)
    return output, task, start, model


def test_carried_losses_equal_the_streams_run_by_hand(uninterrupted):
    """Stream s is segments [s*K, (s+1)*K); step k runs segment k of both streams on the memory
    the previous step left (detached), then AdamW steps; a new epoch starts from empty."""
    output, task, start, trained = uninterrupted
    input_ids, document_ids, labels = task.train_rows
    per_stream = len(input_ids) // 2
    assert 2 <= per_stream < SETTINGS["steps"]  # the run crosses an epoch boundary
    model = copy.deepcopy(start).train()
    optimizer = make_optimizer(model, SETTINGS["lr"], 0.01)
    scheduler = make_scheduler(optimizer, SETTINGS["warmup"], SETTINGS["steps"])
    expected = []
    for step in range(SETTINGS["steps"]):
        k = step % per_stream
        if k == 0:
            memory = model.new_memory(2)
        rows = torch.tensor([k, per_stream + k])
        optimizer.zero_grad()
        loss = model(input_ids[rows], memory=memory, document_ids=document_ids[rows],
                     labels=labels[rows]).loss  # fmt: skip
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        expected.append(float(loss.detach()))
    assert losses(output) == expected
    for a, b in zip(trained.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert task.window == 1 and input_ids.shape[1] == SEGMENT


def test_each_micro_batch_carries_its_own_memory(tmp_path):
    """Accumulation 2 of one row: micro-batch 0 always holds stream 0, micro-batch 1 stream 1,
    each with its memory; the step's loss is their mean, its gradient their sum / 2."""
    settings = {**SETTINGS, "batch_size": 1, "accumulation": 2, "steps": 4}
    task, model = carried_task()
    by_hand = copy.deepcopy(model).train()
    train(task, model, TrainConfig(output=tmp_path, **settings))
    assert sorted(task.carried) == [0, 1]

    input_ids, document_ids, labels = task.train_rows
    per_stream = len(input_ids) // 2
    optimizer = make_optimizer(by_hand, settings["lr"], 0.01)
    scheduler = make_scheduler(optimizer, settings["warmup"], settings["steps"])
    memories = [by_hand.new_memory(1), by_hand.new_memory(1)]
    expected = []
    for k in range(settings["steps"]):
        optimizer.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for stream, memory in enumerate(memories):
            row = [stream * per_stream + k]
            loss = by_hand(input_ids[row], memory=memory, document_ids=document_ids[row],
                           labels=labels[row]).loss  # fmt: skip
            (loss / 2).backward()
            total += loss.detach().double() / 2
        torch.nn.utils.clip_grad_norm_(by_hand.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        expected.append(float(total))
    assert losses(tmp_path) == expected
    for a, b in zip(model.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_document_starting_at_a_step_resets_the_memory():
    """The memory of the previous step is blind to a document that starts with this step's
    segment: the loss equals that segment's from an empty memory (and differs when the same
    document goes on)."""
    task, model = carried_task()
    model.eval()
    task.train_order(0, 2)
    with torch.no_grad():
        task.loss(model, task.batch(task.train_order(0, 2)[:2], None))
        following = task.batch(task.train_order(0, 2)[2:4], None)
        fresh = model(
            following["input_ids"],
            memory=model.new_memory(2),
            document_ids=following["document_ids"],
            labels=following["labels"],
        ).loss
        carried_over = copy.deepcopy(task.carried)
        assert task.loss(model, following) != fresh  # the memory is used ...
        task.carried = carried_over
        new_document = {**following, "document_ids": following["document_ids"] + 1000}
        assert task.loss(model, new_document) == fresh  # ... and forgotten at a new document


def test_the_losses_read_nothing_from_the_device():
    """A step's batch keeps host copies of its document ids and labels, which the loop's move to
    the device leaves on the host: on the meta device (no values: any read raises) the carried
    memory's steps and a window of segments (``lm_memory.py``) run."""
    task, model = carried_task()
    order, meta = task.train_order(0, 2), torch.device("meta")
    model = model.to(meta)
    for step in range(3):  # the memory carried over two steps
        batch = _to_device(task.batch(order[2 * step : 2 * step + 2], None), meta)
        assert batch["document_ids"].device == meta and task.loss(model, batch).device == meta
    windows, model = carried_task(carry_memory="false")
    batch = _to_device(windows.batch([0, 1], None), meta)
    assert windows.window == 3 and windows.loss(model.to(meta), batch).device == meta


def test_resume_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    """The memories are part of the checkpoint: stopped at step 5 and resumed, the losses and
    the weights are those of the run that never stopped (dropout off: the memory is what a
    resume could lose here)."""
    output, _, _, model_a = uninterrupted
    task, model = carried_task()
    train(task, model, TrainConfig(output=tmp_path, stop_at=5, **SETTINGS))
    saved = latest_checkpoint(tmp_path)
    names = read_tensor_file(saved / "training_state.safetensors")
    assert "task.0.memory.0.layer.1.keys" in names  # (2 rows, 2 heads, 24 slots, 12)
    assert names["task.0.memory.0.layer.1.keys"].shape == (2, 2, MEMORY, 12)
    task_b, model_b = carried_task()
    train(task_b, model_b, TrainConfig(output=tmp_path, **SETTINGS), resume=True)
    assert losses(tmp_path) == losses(output)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


def test_ddp_group_of_one_matches_plain_training(uninterrupted, tmp_path):
    output, _, _, _ = uninterrupted
    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        task, model = carried_task()
        train(task, model, TrainConfig(output=tmp_path / "ddp", **SETTINGS))
    finally:
        distributed.teardown()
    assert losses(tmp_path / "ddp") == losses(output)


def test_segments_per_stream_is_read_without_train_order():
    """The stream layout is a function of the training segments and the streams, readable
    before the loop asks for an order; ``train_order`` follows it."""
    task, _ = carried_task()
    assert task.num_train_examples() == 16
    assert task.segments_per_stream(2) == 8  # SETTINGS' comment
    assert task.segments_per_stream(3) == 5  # the 16th segment left unread
    order = task.train_order(0, 2)
    assert order[:4] == [0, 8, 1, 9] and len(order) == 2 * 8
    with pytest.raises(TaskError, match="fewer than 2 per stream for 64 streams"):
        task.segments_per_stream(64)


def test_carry_memory_errors():
    with pytest.raises(TaskError, match="carry_memory: needs segment=L"):
        build_task("lm", data=Split(texts(3, 1), texts(1, 2)), vocab_size=280,
                   overrides={"carry_memory": "true", "dim": "24"})  # fmt: skip
    task, _ = carried_task()
    with pytest.raises(TaskError, match="carry_memory: batches follow train_order"):
        task.batch([0, 1], None)
    with pytest.raises(TaskError, match="fewer than 2 per stream for 64 streams"):
        task.train_order(0, 64)
    options = json.loads(json.dumps(task.describe()["options"]))  # saved with the task, as JSON
    assert options["carry_memory"] is True


@pytest.mark.slow
def test_two_ranks_carry_their_own_streams_and_resume_exactly(tmp_path):
    """batch 4 on 2 ranks: rank 0 carries streams 0-1, rank 1 streams 2-3 (one memory each);
    both ranks' memories are in the checkpoint, and stopped + resumed equals uninterrupted."""
    settings = {**SETTINGS, "batch_size": 4, "save_every": 0}
    _torchrun(tmp_path / "a", settings)
    _torchrun(tmp_path / "b", {**settings, "stop_at": 5})
    saved = read_tensor_file(latest_checkpoint(tmp_path / "b") / "training_state.safetensors")
    assert [int(saved[f"task.{rank}.memory.0.stream"]) for rank in (0, 1)] == [0, 2]
    _torchrun(tmp_path / "b", {**settings, "resume": True})
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    for rank, first in ((0, 0), (1, 2)):
        assert json.loads((tmp_path / "a" / f"streams-rank{rank}.json").read_text()) == [first]


def _torchrun(output, settings: dict) -> None:
    script = Path(__file__).with_name("ddp_carry_script.py")
    torchrun(script, json.dumps({"output": str(output), **settings}))
