"""Idea 13 -- data-parallel training: self-attention computes every position at once, so a
batch splits cleanly across processes (or GPUs). Each process holds a full copy of the model,
takes its share of the batch, and the gradients are averaged across processes before each
update; every copy stays identical, and the step equals one process on the whole batch.

Two processes on this CPU (gloo), started here; under torchrun the environment is set for you:
    python -m torch.distributed.run --nproc_per_node=2 -m atenea train lm ...

    python examples/12_data_parallel.py
"""

import os
import socket
import tempfile

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from atenea.models import DecoderConfig, DecoderModel
from atenea.training import distributed

CONFIG = DecoderConfig.from_name("gpt2-tiny", vocab_size=50, num_layers=1, max_positions=16)


def make_model() -> DecoderModel:
    torch.manual_seed(0)  # every process starts from the same weights
    return DecoderModel(CONFIG)


def whole_batch() -> torch.Tensor:
    return torch.randint(0, 50, (8, 12), generator=torch.Generator().manual_seed(1))


def one_step(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    distributed.setup()  # joins the group (gloo on the CPU)
    model = DistributedDataParallel(make_model())  # averages the gradients of the copies
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mine = whole_batch().chunk(world_size)[rank]  # this process's share of the batch
    loss = model(mine, labels=mine).loss
    loss.backward()  # the gradients are averaged over both processes here
    optimizer.step()
    if distributed.is_main():
        torch.save(model.module.state_dict(), os.path.join(folder, "ddp.pt"))
    distributed.teardown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(one_step, args=(2, free_port(), folder), nprocs=2)
        parallel = torch.load(os.path.join(folder, "ddp.pt"))

    # The same step in one process, on the whole batch.
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = whole_batch()
    model(batch, labels=batch).loss.backward()
    optimizer.step()
    difference = max((parallel[n] - p).abs().max().item() for n, p in model.state_dict().items())
    print(f"2 processes x 4 sequences vs 1 process x 8: largest weight difference {difference:.1e}")
    assert difference < 1e-5
