import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from atenea.training import distributed
from atenea.training.loop import TrainConfig, train
from tests.helpers import losses, torchrun

from .toy import ToyTask

SCRIPT = Path(__file__).with_name("ddp_script.py")
SETTINGS = dict(steps=3, batch_size=4, accumulation=2, lr=3e-3, warmup=1, eval_every=0,
                save_every=2, seed=5, progress=False)  # fmt: skip


class RecordingTask(ToyTask):
    """The toy task, noting which model class its loss was computed with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model_classes = set()

    def loss(self, model, batch):
        self.model_classes.add(type(model).__name__)
        return super().loss(model, batch)


def _single_process_run(output):
    task = RecordingTask(dropout=0.0)
    model = task.build_model()
    train(task, model, TrainConfig(output=output, **SETTINGS))
    assert task.model_classes == {"DecoderModel"}
    return task, model


def test_without_torchrun_everything_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup() == distributed.World(rank=0, size=1, local_rank=0)
    assert not distributed.active() and distributed.is_main()
    assert distributed.world().main and distributed.device() == torch.device("cpu")
    distributed.barrier()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model) is model and distributed.unwrap(model) is model
    assert torch.equal(distributed.all_reduce_sum(torch.ones(2)), torch.ones(2))
    distributed.teardown()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE: expected an integer"):
        distributed.setup()


def test_the_mean_over_ranks_divides_by_the_ranks_average_count(monkeypatch):
    """Two ranks, one item between them (on this one): each rank divides its total by the
    average count, 0.5, and DDP's mean of the two gradients is then one process's mean over
    the one item. A count under 1 is a real average here, not "no item"."""
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t)  # the other rank: 0 items
    assert distributed.mean_over_ranks(torch.tensor(3.0), torch.tensor(1)).item() == 6.0
    nothing = distributed.mean_over_ranks(torch.tensor(0.0), torch.tensor(0))
    assert nothing.item() == 0.0


def test_batch_size_must_divide_among_the_ranks(tmp_path):
    with pytest.raises(ValueError, match="batch_size: 4 does not divide among 3 processes"):
        TrainConfig(output=tmp_path, batch_size=4).check(world_size=3)


def test_ddp_wrapper_in_a_group_of_one_matches_plain_training(tmp_path):
    """The DDP code path (wrapper, no_sync, all-reduce of the logged loss) in-process, fast."""
    _, plain_model = _single_process_run(tmp_path / "plain")
    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        assert distributed.active() and distributed.world() == distributed.World(0, 1, 0)
        task = RecordingTask(dropout=0.0)
        model = task.build_model()
        train(task, model, TrainConfig(output=tmp_path / "ddp", **SETTINGS))
    finally:
        distributed.teardown()
    assert task.model_classes == {"DistributedDataParallel"}
    assert losses(tmp_path / "ddp") == losses(tmp_path / "plain")
    for a, b in zip(plain_model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-000003" / "COMPLETE").is_file()


@pytest.mark.slow
def test_two_ranks_take_disjoint_shards_and_match_one_process(tmp_path):
    output = tmp_path / "ddp"
    _torchrun({"output": str(output), "dropout": 0.0, **SETTINGS})

    task, model = _single_process_run(tmp_path / "single")
    global_order = [i for batch in task.seen for i in batch]  # 3 steps x 2 micro-batches x 4
    rank0 = json.loads((output / "indices-rank0.json").read_text())
    rank1 = json.loads((output / "indices-rank1.json").read_text())
    assert len(rank0) == len(rank1) == len(global_order) // 2
    assert not set(rank0) & set(rank1)
    # every micro-batch of 4 is split in two: rank 0 takes the first half, rank 1 the second
    halves = [global_order[i : i + 4] for i in range(0, len(global_order), 4)]
    assert rank0 == [i for half in halves for i in half[:2]]
    assert rank1 == [i for half in halves for i in half[2:]]

    assert losses(output) == pytest.approx(losses(tmp_path / "single"), rel=1e-5)
    assert {p.name for p in output.iterdir()} >= {"model.safetensors", "metrics.jsonl"}
    from atenea.models import load_pretrained

    trained, _ = load_pretrained(output)
    # Adam divides by the gradient's running RMS, so an all-reduce's rounding in a gradient near
    # zero moves a weight by a fraction of a step (lr 3e-3): close, not equal.
    for a, b in zip(model.state_dict().values(), trained.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_two_ranks_with_dropout_resume_bit_for_bit(tmp_path):
    """Every rank's RNG travels with the checkpoint: a DDP run stopped and resumed equals an
    uninterrupted one (dropout on, so each rank's own masks matter)."""
    settings = {**SETTINGS, "dropout": 0.1}
    _torchrun({"output": str(tmp_path / "a"), **settings})
    _torchrun({"output": str(tmp_path / "b"), **settings, "stop_at": 2})
    _torchrun({"output": str(tmp_path / "b"), **settings, "resume": True})
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    from atenea.models.pretrained import read_tensor_folder

    a, b = read_tensor_folder(tmp_path / "a"), read_tensor_folder(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_signal_on_one_rank_stops_both_at_one_step_and_resumes_bit_for_bit(tmp_path):
    """Rank 1 alone gets SIGTERM in step 2 (loss call 3: accumulation 2); the ranks' votes,
    summed with the step's totals, stop both after step 2 with a checkpoint of it, and both
    name the signal (rank 0 said Ctrl-C: it learns of the stop from the votes)."""
    settings = {**SETTINGS, "dropout": 0.1, "save_every": 0}
    _torchrun({"output": str(tmp_path / "a"), **settings})
    _torchrun({"output": str(tmp_path / "b"), **settings, "signal": [1, 3, "SIGTERM"]})
    stopped = [json.loads((tmp_path / "b" / f"stopped-rank{r}.json").read_text()) for r in (0, 1)]
    assert stopped == [[2, "SIGTERM"], [2, "SIGTERM"]]
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["checkpoint-000002"]
    _torchrun({"output": str(tmp_path / "b"), **settings, "resume": True})
    assert losses(tmp_path / "b") == losses(tmp_path / "a")


def _torchrun(arguments: dict) -> None:
    """``ddp_script.py`` with ``arguments`` on two ranks (``tests.helpers.torchrun``)."""
    torchrun(SCRIPT, json.dumps(arguments))
