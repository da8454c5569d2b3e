"""FSDP2 (``TrainConfig.fsdp`` / ``atenea train --fsdp``): a sharded run trains what a plain run
trains, its checkpoints are the usual full ones, and it resumes bit for bit. In a process group
of one here (fast); two ranks under torchrun in the slow tests."""

import pytest
import torch.distributed as dist

from atenea.models import load_pretrained
from atenea.training import distributed
from atenea.training.loop import TrainConfig, train
from tests.helpers import assert_same_weights, losses

from .test_distributed import SETTINGS, RecordingTask, _single_process_run, _torchrun
from .toy import ToyTask


def _group_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)


def _fsdp_run(output):
    task = RecordingTask(dropout=0.0)
    model = task.build_model()
    train(task, model, TrainConfig(output=output, fsdp=True, **SETTINGS))
    return task, model


def test_fsdp_needs_a_process_group(tmp_path):
    with pytest.raises(ValueError, match="TrainConfig.fsdp: .* torchrun"):
        train(ToyTask(), ToyTask().build_model(), TrainConfig(output=tmp_path, fsdp=True,
                                                               **SETTINGS))  # fmt: skip


def test_a_sharded_run_trains_and_saves_what_a_plain_run_does(tmp_path):
    _, plain = _single_process_run(tmp_path / "plain")
    _group_of_one(tmp_path)
    try:
        task, _ = _fsdp_run(tmp_path / "fsdp")
    finally:
        distributed.teardown()
    assert task.model_classes == {"FSDPDecoderModel"}  # the loss ran on the sharded model
    assert losses(tmp_path / "fsdp") == losses(tmp_path / "plain")
    saved, _ = load_pretrained(tmp_path / "fsdp")  # a plain model folder, full tensors
    assert_same_weights(plain, saved)


def test_a_sharded_run_resumes_bit_for_bit(tmp_path):
    _group_of_one(tmp_path)
    try:
        settings = {**SETTINGS, "steps": 4}
        for output, stops in (("whole", [None]), ("halves", [2, None])):
            for stop in stops:
                task = ToyTask()
                config = TrainConfig(output=tmp_path / output, fsdp=True, stop_at=stop, **settings)
                resume = (tmp_path / output / "checkpoints").exists()
                train(task, task.build_model(), config, resume=resume)
    finally:
        distributed.teardown()
    whole, _ = load_pretrained(tmp_path / "whole")
    halves, _ = load_pretrained(tmp_path / "halves")
    assert_same_weights(whole, halves)
    assert losses(tmp_path / "whole") == losses(tmp_path / "halves")


@pytest.mark.slow
def test_two_sharded_ranks_match_two_ddp_ranks_and_resume_bit_for_bit(tmp_path):
    _torchrun({"output": str(tmp_path / "ddp"), "dropout": 0.0, **SETTINGS})
    _torchrun({"output": str(tmp_path / "fsdp"), "dropout": 0.0, "fsdp": True, **SETTINGS})
    _torchrun({"output": str(tmp_path / "half"), "dropout": 0.0, "fsdp": True, **SETTINGS,
               "stop_at": 2})  # fmt: skip
    _torchrun({"output": str(tmp_path / "half"), "dropout": 0.0, "fsdp": True, **SETTINGS,
               "resume": True})  # fmt: skip
    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "ddp"), rel=1e-5)
    assert losses(tmp_path / "half") == losses(tmp_path / "fsdp")
    ddp, fsdp, half = (load_pretrained(tmp_path / name)[0] for name in ("ddp", "fsdp", "half"))
    assert_same_weights(ddp, fsdp, rtol=1e-4, atol=1e-4)  # the reduce order differs
    assert_same_weights(fsdp, half)
