"""Train the toy task in a process of its own (under torchrun, or alone), for the tests that
need one: DDP with two ranks.

    python tests/training/ddp_script.py '{"output": "...", "steps": 4, ...}'

The argument is a JSON object of ``TrainConfig`` fields plus ``dropout`` (the toy model's),
``resume``, and ``signal``: ``[rank, call]`` (or ``[rank, call, "SIGTERM"]``) sends that rank
SIGINT (SIGTERM) during its loss call number ``call``. Each rank writes the example indices it
trained on to ``output/indices-rank{rank}.json``, and the step it stopped at after a signal (on
any rank) and the signal's name as that rank tells it to ``output/stopped-rank{rank}.json``.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy import SignalledTask  # noqa: E402

from atenea.training import distributed  # noqa: E402
from atenea.training.loop import TrainConfig, TrainingInterrupted, train  # noqa: E402


def main(arguments: dict) -> None:
    torch.set_num_threads(1)  # the same numerics as the in-process tests (one thread)
    resume = arguments.pop("resume", False)
    signal_rank, signal_call, *name = arguments.pop("signal", (None, None))
    world = distributed.setup()
    at_call = signal_call if world.rank == signal_rank else None
    number = getattr(signal, name[0] if name else "SIGINT")
    task = SignalledTask(at_call, number, dropout=arguments.pop("dropout", 0.0))
    model = task.build_model()
    config = TrainConfig(**{"progress": False, **arguments})
    try:
        train(task, model, config, resume=resume)
    except TrainingInterrupted as stopped:
        path = Path(config.output) / f"stopped-rank{world.rank}.json"
        path.write_text(json.dumps([stopped.step, stopped.signal_name]))
    finally:
        indices = [i for batch in task.seen for i in batch]
        path = Path(config.output) / f"indices-rank{world.rank}.json"
        path.write_text(json.dumps(indices))
        distributed.teardown()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
