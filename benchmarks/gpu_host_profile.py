"""Where the host's time goes in one Triton attention call, on a GPU.

On the H200 a 4k forward+backward under a 1024 window took 2.05 ms per call while its kernels
summed to 0.72 ms: the GPU waited for the host. This script finds out for what.

    python benchmarks/gpu_host_profile.py [--length 4096] [--masks window causal] [--calls 50]

Per mask, for atenea's ``triton`` backend and compiled FlexAttention side by side:

1. ``host_ms``: wall time per call when the host never waits (no synchronisation inside the
   loop; the GPU's queue is far from full at 50 calls), against ``gpu_ms``, the median GPU time
   per call (``do_bench``). ``host_ms`` close to ``gpu_ms`` or above it: host-bound.
2. ``syncs``: the first operation that makes the host wait for the GPU during one
   forward+backward, caught by ``torch.cuda.set_sync_debug_mode("error")`` (None: no sync).
3. A cProfile of the calls (atenea only): the 25 functions with the most time of their own,
   printed as text after the JSON rows. Triton's launcher, atenea's planning and autograd each
   show there under their own names.

B=1, H=16, D=128, bf16, as in ``gpu.py``. Needs CUDA.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import gpu  # noqa: E402


def host_ms(step, calls: int) -> float:
    """Wall milliseconds per call of ``step`` with no synchronisation between calls."""
    step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(calls):
        step()
    elapsed = time.perf_counter() - started  # before the final wait: host time only
    torch.cuda.synchronize()
    return elapsed / calls * 1e3


def first_sync(step) -> str | None:
    """The error text of the first implicit host-device synchronisation in ``step``."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    except RuntimeError as error:
        return str(error).splitlines()[0][:200]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return None


def own_time_profile(step, calls: int, top: int = 25) -> str:
    """cProfile's ``top`` functions by time of their own over ``calls`` calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        step()
    profiler.disable()
    torch.cuda.synchronize()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--masks", nargs="*", default=["window", "causal", "documents"])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    gpu.require_cuda("gpu_host_profile.py")
    print(json.dumps({"machine": benchlib.machine()}), flush=True)
    rows, profiles = [], []
    shape = (gpu.B, gpu.H, args.length, gpu.D)
    for name in args.masks:
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))  # fmt: skip
        grad = torch.randn_like(q)
        contenders = gpu.attention_contenders(name, args.length)
        for label in ("atenea triton", "FlexAttention"):
            fn = contenders.get(label)
            if fn is None:
                continue
            for what, step in (
                ("fwd", lambda f=fn, q=q, k=k, v=v: f(q, k, v)),
                ("fwd+bwd", lambda f=fn, q=q, k=k, v=v, g=grad: f(q, k, v).backward(g)),
            ):
                row = {"mask": name, "L": args.length, "impl": label, "what": what}
                try:
                    row["host_ms"] = round(host_ms(step, args.calls), 4)
                    row["gpu_ms"] = round(gpu.bench(step, quick=False), 4)
                    row["syncs"] = first_sync(step)
                except Exception as error:  # noqa: BLE001 - a row that fails says why
                    row["error"] = f"{type(error).__name__}: {str(error)[:160]}"
                q.grad = k.grad = v.grad = None
                rows.append(row)
                print(json.dumps(row), flush=True)
                if label == "atenea triton" and what == "fwd+bwd" and "error" not in row:
                    profiles.append((name, own_time_profile(step, args.calls)))
                    q.grad = k.grad = v.grad = None
    for name, text in profiles:
        print(f"\n== cProfile, atenea triton fwd+bwd, {name}, {args.calls} calls ==\n{text}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
