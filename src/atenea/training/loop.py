"""The training loop: one function, ``train(task, model, config)``, for every task.

    for step in steps:                          G = batch_size * accumulation examples a step
        examples [pos*G, (pos+1)*G) of the epoch's permutation, in `accumulation` micro-batches
        (under DDP each micro-batch is cut into world-size shards, rank r takes shard r)
        loss = task.loss(model, task.batch(indices, generator seeded from the step))
        backward (bf16 autocast optional) -> clip -> AdamW -> scheduler
        log {step, loss, lr, grad_norm, tokens_per_s} to metrics.jsonl
        every eval_every steps: task.evaluate;  every save_every steps: a checkpoint
        every save_minutes, and on Ctrl-C / SIGTERM (then stop): a checkpoint (interrupt.py)
    the end: evaluation, checkpoint, the model folder in config.output

The loop writes data and draws nothing: ``metrics.jsonl`` (``training.metrics_log``) holds what
a picture of the run needs, and ``atenea train`` draws ``curves.png`` from it afterwards. The
settings are ``TrainConfig`` (``training.config``), the random numbers come from
``training.sampling``, the checkpoints are ``training.state``'s.

Sampling. Epoch ``e`` visits the examples in the order of
``torch.randperm(N, generator=torch.Generator().manual_seed(seed + e))``; its step ``pos``
takes positions ``[pos*G, (pos+1)*G)``. The last ``N mod G`` examples of a permutation are
dropped (every step sees exactly G examples, so every loss is a mean over the same amount of
data; the next epoch's permutation covers the dropped ones with high probability). Every batch
is a pure function of ``(seed, epoch, position, micro-batch)``, and the optimizer, scheduler
and RNG states travel with each checkpoint: a resumed run computes the same batches and the
same losses, bit for bit, as an uninterrupted one. A task may fix the order itself
(``train_order``: lm with a carried memory reads its streams in sequence) and carry state from
step to step (``train_state`` / ``load_train_state``, saved with every checkpoint, every rank's):
hooks of ``Task`` (``tasks/base.py``) whose defaults keep the permutation and carry nothing.

Evaluation never draws from the training's random stream (the RNG states are put back
afterwards), so evaluating more or less often does not change the training. Under DDP only rank
0 evaluates, logs and writes files, while the other ranks wait at a barrier; they return ``{}``.

DDP and one process give the same losses when a task's randomness belongs to the examples, not
to the micro-batch: every rank gets the same ``generator`` for its shard, so a task that masks
(MLM) should draw per example, e.g. one number from ``generator`` plus the example's index seeding
that example's generator (as ``tests/training/toy.py`` does). Rank ``r`` seeds torch with
``seed + r`` (its own dropout masks); each checkpoint holds every rank's torch RNG states, so a
DDP run resumed on as many ranks is exact too.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from torch import nn

from atenea.attention.transfer import to_device
from atenea.training import distributed, sharding
from atenea.training.config import TrainConfig, TrainingError, check_resume
from atenea.training.interrupt import Interrupts, TrainingInterrupted
from atenea.training.metrics_log import METRICS, MetricsLog
from atenea.training.sampling import (
    batch_generator,
    epoch_order,
    rng_untouched,
    seed_everything,
)
from atenea.training.schedule import make_optimizer, make_scheduler, refresh_learning_rates
from atenea.training.state import (
    TrainingState,
    latest_checkpoint,
    load_training_state,
    restore_rank_rng,
    save_checkpoint,
    write_model,
)

__all__ = ["TrainConfig", "TrainingError", "TrainingInterrupted", "train"]


def _to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device``, copied without the host waiting for the GPU (a plain
    ``.to`` would: ``attention.transfer``); other values as they are."""
    return {k: to_device(v, device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _progress_bar(config: TrainConfig, start: int, main: bool):
    if not (config.progress and main):
        return None
    from tqdm.auto import tqdm  # lazy: only for interactive runs

    return tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)


class _Run:
    """The state of one training run and its pieces (a step, an evaluation, a checkpoint)."""

    def __init__(self, task, model: nn.Module, config: TrainConfig, world: distributed.World):
        self.task, self.config, self.world = task, config, world
        self.main = world.main
        self.output = Path(config.output)
        self.group = config.batch_size * config.accumulation
        self.num_examples = task.num_train_examples()
        self.batches_per_epoch = self.num_examples // self.group
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"TrainConfig.batch_size: a step needs batch_size * accumulation = {self.group} "
                f"examples, the task has only {self.num_examples} training examples"
            )
        self.device = distributed.device()
        if world.size > 1 or self.device.type == "cuda":
            model = model.to(self.device)
        else:  # one process: train where the caller put the model
            self.device = next(model.parameters()).device
        self.full = None  # under FSDP: an unsharded copy for checkpoints (sharding.FullCopy)
        if config.fsdp:
            self.full = sharding.FullCopy(
                task.build_model, lambda m: make_optimizer(m, config.lr, config.weight_decay)
            )
            model = sharding.shard(model)
        self.plain = model  # ``self.model`` is the DDP wrapper under torchrun
        self.model = model
        # On a GPU, AdamW's fused kernel updates every tensor in one launch.
        fused = self.device.type == "cuda"
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay, fused=fused)
        self.scheduler = make_scheduler(self.optimizer, config.warmup, config.steps)
        self.log = MetricsLog(self.output / METRICS, enabled=self.main)
        self.step, self.epoch, self.position = 0, 0, 0
        self.metrics: dict = {}
        self.evaluated_at: int | None = None
        self.saved_at: int | None = None
        self.last_checkpoint: Path | None = None
        self.task_info = task.describe() if self.main else {}
        self.bar = None
        self.interrupts = Interrupts(None)  # ``train`` installs the real one (signals, clock)
        # every rank's interrupt votes, summed in the last step (as many as Interrupts casts)
        self.votes = [0.0] * len(self.interrupts.votes())

    # -- starting -------------------------------------------------------------------------------

    def start_fresh(self) -> None:
        old = latest_checkpoint(self.output)
        if old is not None:
            raise TrainingError(
                f"{self.output} already holds checkpoints of a run ({old.name}); resume it, or "
                f"train into a new (or emptied) output folder"
            )
        distributed.barrier()  # every rank has looked before rank 0 writes anything
        if self.main:
            self.output.mkdir(parents=True, exist_ok=True)
            self.log.path.unlink(missing_ok=True)  # a fresh run starts a fresh log
        seed_everything(self.config.seed, self.world.rank)  # before any dropout mask is drawn

    def resume(self) -> None:
        folder = latest_checkpoint(self.output)
        if folder is None:
            raise TrainingError(
                f"nothing to resume: no complete checkpoint in {self.output / 'checkpoints'}"
            )
        if self.full is None:
            state = load_training_state(folder, self.plain, self.optimizer, self.scheduler)
        else:  # every rank reads the checkpoint into its full copy, then keeps its shards
            state = load_training_state(folder, self.full.model, self.full.optimizer,
                                        self.scheduler)  # fmt: skip
            self.full.push(self.plain, self.optimizer)
        check_resume(state.config, self.config, folder)
        if state.config.get("steps") != self.config.steps:  # a longer run: the new schedule
            refresh_learning_rates(self.scheduler)
        if not restore_rank_rng(state, self.world.rank, self.world.size) and self.world.rank:
            # saved by another number of ranks: not exact anyway, but keep the ranks apart
            torch.manual_seed(self.config.seed + self.world.rank + 1_000_003 * state.step)
        if len(state.task_state) == self.world.size:  # saved by as many ranks: each its own
            self.task.load_train_state(state.task_state[self.world.rank], self.device)
        self.step, self.epoch, self.position = state.step, state.epoch, state.position
        self.last_checkpoint, self.saved_at = folder, state.step
        self.log.truncate_after(self.step)
        evaluation = self.log.evaluation_at(self.step)
        if evaluation is not None:  # e.g. resuming a finished run: do not evaluate it twice
            self.metrics, self.evaluated_at = evaluation, self.step
        distributed.barrier()  # rank 0 has truncated the log before anyone goes on

    # -- the pieces of the loop -----------------------------------------------------------------

    def order(self, epoch: int) -> list[int]:
        """The examples of ``epoch`` in the order the steps take them: the task's own fixed
        order when it has one (streams read in sequence, ``lm_carry.py``), else a permutation."""
        order = self.task.train_order(epoch, self.group)
        if order is not None:
            return order
        return epoch_order(self.num_examples, self.config.seed, epoch)

    def task_state(self) -> list[dict[str, torch.Tensor]]:
        """What the task carries from step to step (``train_state``: the carried memories of
        ``lm_carry.py``), every rank's, for rank 0 to save; a task that carries nothing gives
        empty dicts, so nothing is saved (and no rank gathers anything)."""
        local = self.task.train_state()
        if self.world.size == 1:
            return [local]
        gathered = {name: distributed.all_gather(t) for name, t in sorted(local.items())}
        return [{name: ts[r] for name, ts in gathered.items()} for r in range(self.world.size)]

    def train_step(self, order: list[int]) -> tuple[float, float, int]:
        """One optimizer step on global batch ``self.position`` of ``order``. Returns the loss
        (mean over the global batch), the gradient norm before clipping and the tokens."""
        config, world = self.config, self.world
        examples = order[self.position * self.group : (self.position + 1) * self.group]
        shard = config.batch_size // world.size
        self.optimizer.zero_grad(set_to_none=True)
        tokens = 0
        # the loss stays on the model's device until the step ends: one read back a step, not
        # one a micro-batch (on a GPU each read waits for all the work queued before it)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        autocast_device = "cuda" if self.device.type == "cuda" else "cpu"
        for micro in range(config.accumulation):
            micro_batch = examples[micro * config.batch_size : (micro + 1) * config.batch_size]
            indices = micro_batch[world.rank * shard : (world.rank + 1) * shard]
            generator = batch_generator(config.seed, self.step, micro)
            host_batch = self.task.batch(indices, generator)
            tokens += self.task.tokens(host_batch)  # counted where the batch was made
            batch = _to_device(host_batch, self.device)
            # DDP all-reduces the gradients once a step, on the last micro-batch.
            last = micro == config.accumulation - 1
            sync = contextlib.nullcontext()
            if self.full is not None:  # FSDP: no reduce-scatter until the last micro-batch
                self.model.set_requires_gradient_sync(last)
            elif world.size > 1 and not last:
                sync = self.model.no_sync()
            with sync:
                with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=config.bf16):
                    loss = self.task.loss(self.model, batch)
                (loss / config.accumulation).backward()
            loss_sum += loss.detach().double() / config.accumulation
        # The loss, tokens and interrupt votes summed over the ranks in one all-reduce, on the
        # loss's device (where nccl reduces), and read back together with the gradient norm:
        # one wait for the device where there were three.
        host = torch.tensor([tokens, *self.interrupts.votes()], dtype=torch.float64)
        totals = torch.cat([loss_sum[None], to_device(host, self.device)])
        distributed.all_reduce_sum(totals)
        max_norm = config.clip if config.clip else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.plain.parameters(), max_norm)
        norm = sharding.full_norm(norm).to(totals).reshape(1)
        loss_total, tokens_total, *self.votes, grad_norm = torch.cat([totals, norm]).tolist()
        loss = loss_total / world.size
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.log.flush()
            raise self._non_finite(loss, grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss, grad_norm, int(tokens_total)

    def _non_finite(self, loss: float, grad_norm: float) -> TrainingError:
        what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", grad_norm)
        good = self.last_checkpoint or latest_checkpoint(self.output)
        return TrainingError(
            f"step {self.step + 1}: {what} is {value} (loss {loss}, gradient norm {grad_norm}); "
            f"stopped without saving. The last good checkpoint is "
            f"{good or 'none (no checkpoint saved yet)'}; lower TrainConfig.lr, raise "
            f"TrainConfig.warmup, or check the data"
        )

    def evaluate(self) -> None:
        """Rank 0 evaluates (with the RNGs put back afterwards); the others wait. A sharded
        model needs every rank in its forward: then all evaluate, and rank 0 logs."""
        if self.main or self.full is not None:
            with rng_untouched():
                metrics = self.task.evaluate(self.plain.eval(), limit=self.config.eval_limit)
            self.plain.train()
        if self.main:
            self.metrics = metrics
            self.log.add({"step": self.step, "eval": self.metrics})
            self.log.flush()
            if self.bar is not None:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
                self.bar.write(f"step {self.step}: {shown}")
        self.evaluated_at = self.step
        distributed.barrier()

    def checkpoint(self) -> None:
        """Rank 0 saves a checkpoint of the current step; the others wait."""
        self.log.flush()  # the log holds every record up to the checkpoint's step
        rank_rng = []
        if self.world.size > 1:  # rank 0 writes every rank's torch RNG states
            cpu = distributed.all_gather(torch.get_rng_state())
            cuda = self.device.type == "cuda"
            gpu = distributed.all_gather(torch.cuda.get_rng_state()) if cuda else None
            rank_rng = [
                {"torch": cpu[r], **({"cuda": gpu[r]} if gpu else {})} for r in range(len(cpu))
            ]
        task_state = self.task_state()  # every rank takes part
        model, optimizer = self.plain, self.optimizer
        if self.full is not None:  # gather the shards (every rank takes part)
            self.full.pull(self.plain, self.optimizer)
            model, optimizer = self.full.model, self.full.optimizer
        if self.main:
            state = TrainingState(
                self.step, self.epoch, self.position, self.config.to_json(), optimizer,
                self.scheduler, rank_rng, task_state,
            )  # fmt: skip
            self.last_checkpoint = save_checkpoint(
                self.output, self.step, model, self.task.tokenizer, self.task_info, state,
                keep=self.config.keep,
            )  # fmt: skip
        self.saved_at = self.step
        self.interrupts.saved()
        distributed.barrier()

    def show(self, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        shown = {"loss": f"{loss:.4f}", "tok/s": f"{tokens_per_s:.0f}"}
        if self.task.main_metric in self.metrics:
            shown[self.task.main_metric] = f"{self.metrics[self.task.main_metric]:.4g}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def save_if_asked(self, end: int) -> None:
        """A checkpoint when the clock (``save_minutes``) or a signal asks for one; after a
        signal, stop the run there (``TrainingInterrupted``)."""
        save, stop = self.interrupts.poll(self.votes)
        if save and self.saved_at != self.step and self.step < end:
            self.checkpoint()
        if stop and self.step < end:
            self.log.flush()
            raise TrainingInterrupted(self.step, self.last_checkpoint, self.interrupts.received)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, fresh: bool) -> dict:
        config = self.config
        # Compile first, then wrap for DDP (the order torch's DDP + compile guide gives).
        stepper = torch.compile(self.plain) if config.compile else self.plain
        self.model = stepper if self.full is not None else distributed.wrap(stepper)
        self.bar = _progress_bar(config, self.step, self.main)
        if fresh:
            self.evaluate()  # the untrained model: curves start from where training started
        self.plain.train()
        end = config.stop_at if config.stop_at is not None else config.steps
        order = self.order(self.epoch)
        while self.step < end:
            if self.position >= self.batches_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
                order = self.order(self.epoch)
            started = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]
            loss, grad_norm, tokens = self.train_step(order)
            self.step, self.position = self.step + 1, self.position + 1
            tokens_per_s = tokens / max(time.perf_counter() - started, 1e-9)
            self.log.add({
                "step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s, "tokens": tokens, "epoch": self.epoch,
            })  # fmt: skip
            if self.step % 10 == 0:
                self.log.flush()
            if (
                config.eval_every
                and self.step % config.eval_every == 0
                and self.step < config.steps
            ):
                self.evaluate()
            self.show(loss, tokens_per_s)
            if config.save_every and self.step % config.save_every == 0 and self.step < end:
                self.checkpoint()
            self.save_if_asked(end)
        if self.step == config.steps and self.evaluated_at != self.step:
            self.evaluate()  # the final evaluation (a run stopped by stop_at has none)
        if self.saved_at != self.step:
            self.checkpoint()
        self.log.flush()
        if self.step == config.steps:
            model = self.plain if self.full is None else self.full.model  # pulled just above
            if self.main:
                write_model(self.output, model, self.task.tokenizer, self.task_info)
            distributed.barrier()
        return self.metrics if self.main else {}


def train(task, model: nn.Module, config: TrainConfig, resume: bool = False) -> dict:
    """Train ``model`` on ``task`` as ``config`` says; returns the final evaluation metrics
    (``{}`` on ranks other than 0; with ``stop_at``, the latest evaluation's).

    Writes ``config.output``: ``metrics.jsonl``, ``checkpoints/``, and at the end the model
    folder (``config.json``, ``model.safetensors``, tokenizer, ``task.json``); nothing is
    drawn. A fresh run refuses an output folder that already holds checkpoints;
    ``resume=True`` goes on from the latest complete one. Under ``torchrun`` the process group
    is joined here (``distributed.setup``) and the model wrapped in ``DistributedDataParallel``;
    the caller calls ``distributed.teardown()`` when done.
    """
    world = distributed.setup()
    config.check(world.size, distributed=distributed.active())
    run = _Run(task, model, config, world)
    if resume:
        run.resume()
    else:
        run.start_fresh()
    try:
        with Interrupts(config.save_minutes, world.size) as run.interrupts:
            return run.run(fresh=not resume)
    finally:
        if run.bar is not None:
            run.bar.close()
