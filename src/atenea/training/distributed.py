"""Data-parallel training under ``torchrun``: thin helpers over ``torch.distributed``.

    torchrun --nproc_per_node=2 -m atenea train lm ...

``torchrun`` starts one process per rank and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. ``setup()`` reads them and joins the process group (gloo on
CPU, nccl on CUDA). Without those variables nothing is initialized and every helper behaves as
a world of one process: ``is_main()`` is True, ``barrier()`` does nothing, ``wrap(model)``
returns the model itself. A process group initialized by the caller (any backend, any
``init_method``) is used as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` in ``[0, size)``, ``local_rank`` on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: expected an integer, got {value!r}"
        ) from None


def active() -> bool:
    """True when a process group is initialized (we are one rank of several, or of one)."""
    return dist.is_available() and dist.is_initialized()


def setup() -> World:
    """Join the process group that ``torchrun`` describes in the environment; idempotent.

    No ``WORLD_SIZE`` (or ``WORLD_SIZE=1``): a single process, no process group. On CUDA each
    rank uses the GPU ``cuda:LOCAL_RANK``.
    """
    if active():
        return world()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise ValueError(f"environment variable RANK: expected 0..{size - 1}, got {rank}")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, rank=rank, world_size=size)
    return World(rank, size, local_rank)


def world() -> World:
    """This process's rank and the number of processes (``World()`` when not distributed)."""
    if not active():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs and writes files."""
    return world().rank == 0


def device() -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` with nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", world().local_rank)
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place (unchanged in a single process); returns it."""
    if active() and dist.get_world_size() > 1:
        if device().type == "cuda" and not tensor.is_cuda:  # nccl reduces GPU tensors only
            on_device = tensor.to(device())
            dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
            tensor.copy_(on_device)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def mean_over_ranks(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """This rank's part of a mean over every rank's items (tokens): ``total`` (this rank's sum
    of per-item losses) divided by ``count`` summed over the ranks, times the number of ranks.
    DDP averages the ranks' gradients, so they add up to the gradient of the global mean, as
    one process computes it on the whole batch; a mean over each rank's own items would weigh
    a rank with fewer tokens more. In one process: ``total / count``. No item on any rank (an
    mlm batch that masked nothing): 0, with its graph."""
    if active() and dist.get_world_size() > 1:
        count = all_reduce_sum(count.detach().to(torch.float64, copy=True)) / dist.get_world_size()
    # No item on any rank: divide by 1 (total is 0 too). Not clamp(min=1): the ranks' average
    # count is a fraction when some ranks have none (2 ranks, 1 item: 0.5)
    count = torch.where(count > 0, count, torch.ones_like(count))
    return total / count.to(total.dtype)


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on all ranks), by rank, on the CPU."""
    if not active() or dist.get_world_size() == 1:
        return [tensor.cpu()]
    local = tensor.to(device())  # nccl gathers GPU tensors only
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return [t.cpu() for t in gathered]


def wrap(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(model)`` when a process group is active, else ``model``.

    ``find_unused_parameters=True`` because a task may leave part of a model unused (BERT's
    pooler under masked-LM training); without it DDP would hang waiting for their gradients.
    """
    if not active():
        return model
    ids = [world().local_rank] if device().type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def teardown() -> None:
    """Leave the process group (nothing to do in a single process)."""
    if active():
        dist.destroy_process_group()
