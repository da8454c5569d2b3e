"""Train the carried-memory lm task of ``test_carry_memory.py`` in a process of its own (under
torchrun), for the two-rank test:

    python tests/training/ddp_carry_script.py '{"output": "...", "steps": 12, ...}'

The argument is a JSON object of ``TrainConfig`` fields plus ``resume``. Each rank writes the
first stream of every memory it carried to ``output/streams-rank{rank}.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.* imports

from atenea.training import distributed  # noqa: E402
from atenea.training.loop import TrainConfig, train  # noqa: E402
from tests.training.test_carry_memory import carried_task  # noqa: E402


def main(arguments: dict) -> None:
    torch.set_num_threads(1)
    resume = arguments.pop("resume", False)
    world = distributed.setup()
    task, model = carried_task()
    config = TrainConfig(**{"progress": False, **arguments})
    try:
        train(task, model, config, resume=resume)
    finally:
        path = Path(config.output) / f"streams-rank{world.rank}.json"
        path.write_text(json.dumps(sorted(task.carried)))
        distributed.teardown()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
