"""Where a ViT training step spends its time: atenea's vit-tiny against Hugging Face's
``ViTForImageClassification`` on the same weights (the ``vit`` case of ``models.py``).

    python benchmarks/vit_step_profile.py            # median wall ms of 10 steps, each side
    python benchmarks/vit_step_profile.py --profile  # and torch.profiler's table of 5 steps
    python benchmarks/vit_step_profile.py --compile  # and atenea's step under torch.compile

A step: forward on 128 grey 28 x 28 images, cross-entropy, backward, AdamW. The profile is
what found the copies of the old oneDNN weight-gradient route (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vit_bench import vit_pair  # noqa: E402


def models():
    ours, hf = vit_pair()
    return {"atenea": ours, "hf": hf}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="also torch.profiler's table")
    parser.add_argument(
        "--compile", action="store_true", help="and atenea's model under torch.compile"
    )
    args = parser.parse_args(argv)
    contenders = models()
    if args.compile:
        contenders["atenea compiled"] = torch.compile(vit_pair()[0])
    pixels, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in contenders.items()}

    def step(name):
        contenders[name](pixels, labels=labels).loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in contenders:  # warm-up (the compile, for the compiled one)
        started = time.perf_counter()
        for _ in range(3):
            step(name)
        print(f"{name}: warm-up of 3 steps {time.perf_counter() - started:.1f} s")
    for name in list(contenders) * 2:  # interleaved, twice
        times = []
        for _ in range(10):
            started = time.perf_counter()
            step(name)
            times.append(time.perf_counter() - started)
        print(f"{name}: {statistics.median(times) * 1e3:.1f} ms a step")
    if args.profile:
        from torch.profiler import profile

        for name in contenders:
            with profile() as prof:
                for _ in range(5):
                    step(name)
            print(f"\n{name}, 5 steps")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
