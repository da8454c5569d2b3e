"""Where the random numbers of a run come from: the starting weights, the order of each epoch,
the generator of each batch, the seeds of each process, and a guard that keeps evaluation out
of the training stream.

Every batch is a pure function of ``(seed, epoch, position, micro-batch)``; with the RNG states
saved in each checkpoint (``training.state``), a resumed run draws exactly what an
uninterrupted one draws.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def initial_model(task, seed: int):
    """``task.build_model()`` with its weights drawn from ``seed``: the same run, the same
    starting model (torch seeds its default generator differently in every process). The
    process's random state is left as it was."""
    with rng_untouched():
        torch.manual_seed(seed)
        return task.build_model()


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """The order in which epoch ``epoch`` visits the examples: a pure function of its inputs."""
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def batch_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The generator ``task.batch`` draws from (MLM masking): seeded from the step alone."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + micro)


def example_generators(generator: torch.Generator, indices) -> list[torch.Generator]:
    """One generator per example, seeded from one draw of the batch's ``generator`` and the
    example's index: an example gets the same random numbers whichever DDP rank's shard it
    lands in, so two ranks draw what one process draws for the whole micro-batch."""
    base = int(torch.randint(0, 2**40, (1,), generator=generator))
    return [torch.Generator().manual_seed(base * 1_000_003 + int(i)) for i in indices]


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed torch, Python and numpy; each DDP rank draws its own dropout masks (rank 0 as a
    single process would)."""
    torch.manual_seed(seed + rank)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def rng_untouched():
    """Run the block, then put every RNG back: evaluation must not shift the training stream."""
    python, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(python)
    np.random.set_state(numpy_state)
