"""Fully sharded data parallelism (FSDP2) for models that do not fit one device: ``--fsdp``.

Every transformer block, then the model itself, is sharded with PyTorch's ``fully_shard``
(torchtitan's recipe): each rank keeps ``1/world`` of every parameter, gradient and optimizer
state, and gathers a block's full weights just for its forward and backward.

The training loop stays as it is, with three differences this module carries:

- **gradient accumulation** turns the reduce-scatter off for all but the last micro-batch
  (``set_requires_gradient_sync``), as DDP's ``no_sync``;
- **evaluation** runs on every rank (a sharded forward needs every rank's shards; they compute
  the same numbers and rank 0 logs them);
- **checkpoints** are written from a full, unsharded copy (``FullCopy``) in the usual format:
  the same folder a single process writes, which resumes under any number of ranks or none.
"""

from __future__ import annotations

import torch
from torch import nn

from atenea.nn.block import TransformerBlock


def shard(model: nn.Module) -> nn.Module:
    """Shard every ``TransformerBlock`` of ``model``, then the rest of it, over the process
    group (in place; returns ``model``)."""
    from torch.distributed.fsdp import fully_shard

    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise ValueError(
            f"fsdp: {type(model).__name__} has no transformer blocks to shard; train it with "
            f"plain data parallelism (no --fsdp)"
        )
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _full(t):
    """The whole tensor behind a shard (a collective: every rank calls it, in one order)."""
    return t.full_tensor() if _is_dtensor(t) else t


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """``clip_grad_norm_`` over sharded gradients returns a distributed norm: the whole one."""
    return _full(norm)


class FullCopy:
    """An unsharded copy of a sharded model and its optimizer, on the CPU, in the formats the
    checkpoint code reads and writes (``model.state_dict()``, ``optimizer.state_dict()``).

    ``pull`` gathers the shards into it (every rank calls it); ``push`` scatters it back into
    the shards (every rank, after loading the same checkpoint into its own copy).
    """

    def __init__(self, build, make_optimizer):
        self.model = build().cpu()
        self.optimizer = make_optimizer(self.model)

    def pull(self, sharded: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        full = {name: _full(value).detach().cpu() for name, value in sharded.state_dict().items()}
        self.model.load_state_dict(full)
        state = optimizer.state_dict()
        state["state"] = {
            index: {key: _full(value).detach().cpu() if torch.is_tensor(value) else value
                    for key, value in entries.items()}
            for index, entries in state["state"].items()
        }  # fmt: skip
        for group in state["param_groups"]:  # the copy's own update flags (the CPU's)
            group.pop("fused", None)
        self.optimizer.load_state_dict(state)

    def push(self, sharded: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        from torch.distributed.tensor import distribute_tensor

        like = dict(sharded.state_dict())
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                target = like[name]
                if _is_dtensor(target):
                    value = distribute_tensor(value.to(target.device), target.device_mesh,
                                              target.placements)  # fmt: skip
                    target.to_local().copy_(value.to_local())
                else:
                    target.copy_(value)
        # the optimizer numbers its parameters group by group (state_dict's indices)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state = self.optimizer.state_dict()
        for index, entries in state["state"].items():
            param = params[index]
            for key, value in entries.items():
                if torch.is_tensor(value) and _is_dtensor(param) and value.shape == param.shape:
                    entries[key] = distribute_tensor(value.to(param.device), param.device_mesh,
                                                     param.placements)  # fmt: skip
        for group, now in zip(state["param_groups"], optimizer.state_dict()["param_groups"]):
            group.update({k: now[k] for k in ("fused", "foreach") if k in now})
        optimizer.load_state_dict(state)
