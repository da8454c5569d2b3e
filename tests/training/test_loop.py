import json

import pytest
import torch

from atenea.models import load_pretrained
from atenea.models.pretrained import read_tensor_file
from atenea.training import state
from atenea.training.loop import TrainConfig, TrainingError, train
from atenea.training.metrics_log import read_metrics
from atenea.training.sampling import epoch_order
from atenea.training.schedule import make_optimizer, make_scheduler
from atenea.training.state import latest_checkpoint, load_training_state

from .toy import ToyTask

# 48 examples, 8 a step: 6 steps an epoch, so 12 steps cross an epoch boundary; dropout and the
# batch noise make every RNG matter.
SETTINGS = dict(steps=12, batch_size=4, accumulation=2, lr=3e-3, warmup=2, eval_every=4,
                save_every=4, seed=3, progress=False)  # fmt: skip


def _run(output, resume=False, task=None, model=None, **changes):
    task = task or ToyTask()
    model = model if model is not None else task.build_model()
    metrics = train(task, model, TrainConfig(output=output, **{**SETTINGS, **changes}), resume)
    return task, model, metrics


def _records(folder):
    """metrics.jsonl without the timings (the only thing allowed to differ between runs)."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_metrics(folder)]


def _assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Run A: 12 steps without a break (one torch thread, like every run it is compared to)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        output = tmp_path_factory.mktemp("uninterrupted")
        task, model, metrics = _run(output)
    finally:
        torch.set_num_threads(threads)
    return output, task, model, metrics


def test_outputs_of_a_run(uninterrupted):
    output, task, model, metrics = uninterrupted
    names = {p.name for p in output.iterdir()}
    assert {"config.json", "model.safetensors", "task.json", "metrics.jsonl",
            "checkpoints"} <= names  # fmt: skip
    assert not list(output.rglob("*.png"))  # the loop writes data and draws nothing
    assert json.loads((output / "task.json").read_text()) == task.describe()
    loaded, _ = load_pretrained(output)
    _assert_same_weights(loaded, model)
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == [
        "checkpoint-000008", "checkpoint-000012"]  # fmt: skip

    records = read_metrics(output)
    train_records = [r for r in records if "loss" in r]
    evals = [(r["step"], r["eval"]["perplexity"]) for r in records if "eval" in r]
    assert [r["step"] for r in train_records] == list(range(1, 13))
    assert [s for s, _ in evals] == [0, 4, 8, 12]  # the untrained model is evaluated too
    assert evals[-1][1] < evals[0][1]  # it learned something
    assert metrics["perplexity"] == evals[-1][1]
    for r in train_records:
        assert r["tokens"] == 8 * 12 and r["tokens_per_s"] > 0 and r["grad_norm"] > 0
    assert train_records[0]["lr"] == pytest.approx(3e-3 / 3)  # warmup: (0 + 1) / (2 + 1)
    assert [r["epoch"] for r in train_records] == [0] * 6 + [1] * 6


def test_sampler_visits_every_example_once_an_epoch(uninterrupted):
    _, task, _, _ = uninterrupted
    assert all(len(indices) == 4 for indices in task.seen)
    flat = [i for indices in task.seen for i in indices]
    assert flat[:48] == epoch_order(48, seed=3, epoch=0)
    assert flat[48:] == epoch_order(48, seed=3, epoch=1)
    assert flat[:48] != flat[48:] and sorted(flat[:48]) == list(range(48))


def test_the_remainder_of_an_epoch_is_dropped(tmp_path):
    task = ToyTask(num_examples=21)  # 8 a step: 2 steps an epoch, 5 examples dropped
    _run(tmp_path, task=task, steps=3, eval_every=0, save_every=0)
    flat = [i for indices in task.seen for i in indices]
    assert flat[:16] == epoch_order(21, seed=3, epoch=0)[:16]
    assert flat[16:] == epoch_order(21, seed=3, epoch=1)[:8]


def test_a_task_with_no_hooks_of_its_own_trains_and_resumes(tmp_path):
    """The loop calls ``Task``'s hooks directly; ToyTask overrides none of them, so it gets the
    defaults: the seeded permutation (``train_order`` None), nothing carried or saved."""
    task = ToyTask()
    assert not {"train_order", "train_state", "load_train_state"} & set(vars(ToyTask))
    _run(tmp_path, task=task, steps=2, stop_at=1, eval_every=0, save_every=0)
    saved = read_tensor_file(latest_checkpoint(tmp_path) / state.STATE_TENSORS)
    assert not [name for name in saved if name.startswith("task.")]
    again = ToyTask()
    _run(tmp_path, resume=True, task=again, steps=2, eval_every=0, save_every=0)
    assert task.seen + again.seen == [epoch_order(48, seed=3, epoch=0)[i : i + 4]
                                      for i in (0, 4, 8, 12)]  # fmt: skip


def test_resume_is_bit_for_bit(uninterrupted, tmp_path):
    output_a, task_a, model_a, metrics_a = uninterrupted
    task_b, _, _ = _run(tmp_path, stop_at=8)  # run B: interrupted after 8 steps...
    assert latest_checkpoint(tmp_path).name == "checkpoint-000008"
    assert not (tmp_path / "model.safetensors").exists()  # ... not finished
    # a record past the checkpoint (as from a run killed after it) must go on resume
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"step": 9, "loss": 123.0}) + "\n")

    task_c = ToyTask()
    _, model_c, metrics_c = _run(tmp_path, resume=True, task=task_c)  # ... and resumed to 12
    assert task_b.seen + task_c.seen == task_a.seen
    _assert_same_weights(model_a, model_c)
    assert metrics_c == metrics_a
    records_a, records_c = _records(output_a), _records(tmp_path)
    losses = [r["loss"] for r in records_c if "loss" in r and r["step"] > 8]
    assert losses == [r["loss"] for r in records_a if "loss" in r and r["step"] > 8]
    assert records_c == records_a  # the whole log reads as one run


def test_resume_refuses_other_settings_and_nothing_to_resume(tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume: no complete checkpoint"):
        _run(tmp_path, resume=True)
    _run(tmp_path, stop_at=4, eval_every=0)
    with pytest.raises(TrainingError, match=r"batch_size: 4 -> 8; lr: 0.003 -> 0.01"):
        _run(tmp_path, resume=True, batch_size=8, lr=0.01)


def test_non_finite_loss_stops_and_leaves_the_last_checkpoint(tmp_path):
    task = ToyTask(nan_at_call=7)  # accumulation 1: call 7 is step 7
    model = task.build_model()
    with pytest.raises(TrainingError, match=r"step 7: loss is nan .*checkpoint-000006"):
        _run(tmp_path, task=task, model=model, accumulation=1, save_every=3)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "checkpoint-000003",
        "checkpoint-000006",
    ]
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN step taken
    assert [r["step"] for r in read_metrics(tmp_path) if "loss" in r] == list(range(1, 7))
    optimizer = make_optimizer(model, 3e-3, 0.01)
    state = load_training_state(latest_checkpoint(tmp_path), model, optimizer,
                                make_scheduler(optimizer, 2, 12))  # fmt: skip
    assert state.step == 6


def test_bf16_autocast_is_close_to_float32(tmp_path):
    fixed = dict(steps=2, eval_every=0, save_every=0, lr=1e-3)
    task = ToyTask(dropout=0.0)
    _, model32, _ = _run(tmp_path / "fp32", task=task, **fixed)
    _, model16, _ = _run(tmp_path / "bf16", task=task, bf16=True, **fixed)
    loss32 = [r["loss"] for r in read_metrics(tmp_path / "fp32") if "loss" in r]
    loss16 = [r["loss"] for r in read_metrics(tmp_path / "bf16") if "loss" in r]
    assert loss16 != loss32  # the bfloat16 path really ran...
    assert loss16 == pytest.approx(loss32, rel=2e-2)  # ... and agrees to bfloat16 precision
    assert all(p.dtype == torch.float32 for p in model16.parameters())


def test_no_output_without_progress_and_bad_settings(tmp_path, capsys):
    _run(tmp_path, steps=2, eval_every=0, save_every=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    with pytest.raises(ValueError, match="batch_size \\* accumulation = 800 examples"):
        _run(tmp_path, batch_size=400)
    with pytest.raises(ValueError, match="TrainConfig.stop_at"):
        _run(tmp_path, stop_at=13)
    with pytest.raises(ValueError, match="TrainConfig.accumulation"):
        _run(tmp_path, accumulation=0)


@pytest.mark.parametrize(
    "setting, pattern",
    [
        # clip_grad_norm_ scales by max_norm / norm: negative turns every gradient around
        (dict(clip=-1.0), "TrainConfig.clip: expected None, 0 .no clipping. or a positive"),
        (dict(clip=float("nan")), "TrainConfig.clip"),
        (dict(lr=0.0), r"TrainConfig.lr: expected a finite number > 0, got 0.0"),
        (dict(lr=float("nan")), "TrainConfig.lr"),
        (dict(weight_decay=-0.1), r"TrainConfig.weight_decay: expected a finite number >= 0"),
    ],
)
def test_optimizer_settings_that_would_not_train_are_refused(tmp_path, setting, pattern):
    with pytest.raises(ValueError, match=pattern):
        _run(tmp_path, **setting)


def test_progress_bar_shows_loss_and_metric(tmp_path, capsys):
    _run(tmp_path, steps=4, progress=True)
    captured = capsys.readouterr()
    assert "loss=" in captured.err and "perplexity=" in captured.err
    assert "step 4: loss" in captured.out


class Crash(BaseException):
    """The process dying mid-save: nothing of atenea's may catch it (not an Exception)."""


def _crash_at_step_8(monkeypatch, where):
    """Make the save of step 8 die at ``where``: while writing the run state into
    ``checkpoint-000008.tmp/`` (before the rename), or after the rename, as ``COMPLETE`` is
    written. The saves of other steps go through."""
    if where == "before the rename":
        real_save_file = state.save_file

        def save_file(tensors, filename, *args, **kwargs):
            if "checkpoint-000008" in str(filename):
                raise Crash
            return real_save_file(tensors, filename, *args, **kwargs)

        monkeypatch.setattr(state, "save_file", save_file)
    else:
        real_mark_complete = state._mark_complete

        def mark_complete(folder, step):
            if step == 8:
                raise Crash
            real_mark_complete(folder, step)

        monkeypatch.setattr(state, "_mark_complete", mark_complete)


@pytest.mark.parametrize("where", ["before the rename", "before COMPLETE"])
def test_killed_while_saving_resumes_from_the_previous_checkpoint(
    uninterrupted, tmp_path, monkeypatch, where
):
    output_a, _, model_a, _ = uninterrupted
    _crash_at_step_8(monkeypatch, where)
    with pytest.raises(Crash):
        _run(tmp_path)
    monkeypatch.undo()
    checkpoints = tmp_path / "checkpoints"
    half_written = checkpoints / (
        "checkpoint-000008.tmp" if where == "before the rename" else "checkpoint-000008"
    )
    assert half_written.is_dir() and not (half_written / "COMPLETE").exists()
    assert latest_checkpoint(tmp_path).name == "checkpoint-000004"

    _, model, _ = _run(tmp_path, resume=True)
    _assert_same_weights(model_a, model)
    assert _records(tmp_path) == _records(output_a)
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "checkpoint-000008", "checkpoint-000012"]  # fmt: skip


def test_a_finished_run_is_not_overwritten_and_resumes_to_itself(tmp_path):
    _, _, metrics = _run(tmp_path, steps=4, eval_every=0, save_every=0)
    records = _records(tmp_path)
    with pytest.raises(TrainingError, match="already holds checkpoints .*checkpoint-000004"):
        _run(tmp_path, steps=4, eval_every=0, save_every=0)
    _, _, again = _run(tmp_path, resume=True, steps=4, eval_every=0, save_every=0)
    assert again == metrics
    assert _records(tmp_path) == records  # no second evaluation of step 4


def test_initial_model_draws_its_weights_from_the_seed_alone():
    from atenea.models import DecoderConfig, DecoderModel
    from atenea.training.sampling import initial_model

    class Task:  # a task that leaves the seeding to whoever builds its model
        def build_model(self):
            return DecoderModel(DecoderConfig.from_name("gpt2-tiny", num_layers=1))

    task = Task()

    def weights(seed):
        torch.manual_seed(12345 + seed)  # whatever state the process is in
        return initial_model(task, seed).state_dict()

    first, again, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    initial_model(task, 3)
    assert torch.equal(torch.rand(3), expected)  # the process's random state is left alone
