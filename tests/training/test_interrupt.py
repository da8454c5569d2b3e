"""Stopping a run without losing it (``training/interrupt.py``) and extending a finished run.

SIGINT before the first scheduled checkpoint saves the step it reached and the resumed run ends
bit for bit where an uninterrupted one does; the clock saves without a signal; ``steps`` may
grow on resume, with the schedule continuing as if it had been that long from the start."""

import signal

import pytest
import torch

from atenea.training import interrupt
from atenea.training.loop import TrainConfig, TrainingError, TrainingInterrupted, train
from atenea.training.metrics_log import read_metrics
from atenea.training.schedule import lr_factor
from atenea.training.state import latest_checkpoint
from tests.helpers import assert_same_weights

from .toy import SignalledTask, ToyTask

SETTINGS = dict(steps=8, batch_size=4, accumulation=2, lr=3e-3, warmup=2, eval_every=4,
                save_every=6, seed=3, progress=False)  # fmt: skip


def _train(output, task, resume=False, **changes):
    model = task.build_model()
    train(task, model, TrainConfig(output=output, **{**SETTINGS, **changes}), resume)
    return model


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_first_checkpoint_saves_and_resumes_exactly(
    tmp_path, one_thread, number
):
    handlers = {n: signal.getsignal(n) for n in interrupt.SIGNALS}
    reference = _train(tmp_path / "whole", ToyTask())
    # Call 5 is the first micro-batch of step 3 (accumulation 2); the first save is at step 6.
    with pytest.raises(TrainingInterrupted) as caught:
        _train(tmp_path / "cut", SignalledTask(at_call=5, number=number))
    assert caught.value.step == 3 and caught.value.signal_name == signal.Signals(number).name
    assert latest_checkpoint(tmp_path / "cut").name == "checkpoint-000003"
    assert caught.value.checkpoint == latest_checkpoint(tmp_path / "cut")
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    assert {n: signal.getsignal(n) for n in interrupt.SIGNALS} == handlers  # put back

    resumed = _train(tmp_path / "cut", ToyTask(), resume=True)
    assert_same_weights(reference, resumed)
    losses = [[r["loss"] for r in read_metrics(tmp_path / d) if "loss" in r] for d in
              ("whole", "cut")]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) == 8


def test_the_clock_saves_without_a_signal(tmp_path, monkeypatch):
    now = iter(range(0, 10**6, 700))  # every reading of the clock: 700 s later
    monkeypatch.setattr(interrupt.time, "monotonic", lambda: next(now))
    _train(tmp_path, ToyTask(), save_minutes=10, save_every=0, keep=10, eval_every=0)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == [f"checkpoint-{s:06d}" for s in range(1, 9)]  # every step, 700 s > 10 min


def test_steps_may_grow_on_resume_and_the_schedule_follows_the_new_length(tmp_path):
    _train(tmp_path, ToyTask(), eval_every=0)  # a finished 8-step run
    with pytest.raises(TrainingError, match="steps may only grow"):
        _train(tmp_path, ToyTask(), resume=True, steps=6, eval_every=0)
    _train(tmp_path, ToyTask(), resume=True, steps=12, eval_every=0)
    records = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 13))
    for r in records:  # steps 1-8 on the 8-step schedule, then the 12-step one
        total = 8 if r["step"] <= 8 else 12
        assert r["lr"] == pytest.approx(3e-3 * lr_factor(r["step"] - 1, 2, total), rel=1e-12)
    assert latest_checkpoint(tmp_path).name == "checkpoint-000012"
