"""The Triton kernel's backward on a GPU: where its time goes, and which block sizes make it
fastest. Chooses the ``BACKWARD`` entry of ``configs.py`` for bf16 at one head size.

    python benchmarks/gpu_backward_sweep.py [--head-dim 128] [--lengths 4096 16384] [--group 4]

1. A profile of forward + backward (``torch.profiler``, CUDA kernel times summed over 10 calls)
   per mask (causal, sliding window 1024, 8 documents): the forward kernel, the dK/dV pass, the
   dQ pass, the delta pass and everything else (gradient sums), against the wall time per
   call. Kernel
   time well under the wall time means the GPU waits for the host.
2. Candidate block sizes for each pass apart (the two passes are separate kernels): GPU time of
   that pass per call, in ms, per mask, at ``--sweep-length``; for dK/dV also the tiles'
   orientation (``kv_direct``: queries down, K and V from shared memory). A candidate that
   does not compile says why. First, the dK/dV pass with its default blocks but without
   ``EVEN`` (the full tiles checking their bounds): what it ran at D=128 until stop 27.

B=1, H=16, bf16. Times are medians of CUDA kernel durations from the profiler.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

import atenea
import atenea.attention.backends.triton as triton_backend
from atenea import masks
from atenea.attention.backends.tile_lists import tile_lists
from atenea.attention.backends.triton import launch
from atenea.attention.backends.triton.configs import configs_for
from atenea.attention.backends.triton.launch import pack_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import gpu  # noqa: E402

# (block_m1, block_n1, kv_warps, kv_stages, kv_direct) for dK/dV; (block_m2, block_n2, warps,
# stages) for dQ. Most telling first (a step stopped at its time limit keeps its first rows):
# the default, then the same blocks with the tiles queries down (kv_direct: K and V from
# shared memory; Triton 3.6, causal, EVEN: 447 instructions a step, 13 spill ops, against 477
# and 17), then 128x64 on 8 warps queries down (453, no spills: 0.442 a pair against 0.466),
# one stage (64, 64, 4, 1: 466 and 11 transposed, 452 and 10 queries down; no prefetch), the
# others (every candidate's instructions and spills: docs/benchmarks.md#gpu, stops 28-29).
KV_CANDIDATES = [(64, 64, 4, 2, False), (64, 64, 4, 2, True), (128, 64, 8, 2, True),
                 (64, 64, 4, 1, False), (64, 64, 4, 1, True), (64, 128, 8, 2, False),
                 (32, 128, 8, 2, False), (32, 64, 4, 2, False), (32, 64, 4, 3, False)]  # fmt: skip
Q_CANDIDATES = [(128, 64, 8, 2), (64, 64, 4, 2), (128, 32, 4, 3), (64, 32, 4, 3),
                (128, 64, 8, 3), (64, 64, 4, 3)]  # fmt: skip


def _without_even(kernel):
    """``kernel`` launched with ``EVEN=False`` whatever the call asks (any lists are right for
    the bounds-checking build: it checks every tile it walks)."""

    class Launcher:
        def __getitem__(self, grid):
            def launch_kernel(*args, **kwargs):
                return kernel[grid](*args, **{**kwargs, "EVEN": False})

            return launch_kernel

    return Launcher()


def kernel_times(fn, calls: int = 10) -> dict:
    """Milliseconds per call of each CUDA kernel family, and the wall time per call."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - started) / calls * 1e3
    families = {"forward": 0.0, "dkdv": 0.0, "dq": 0.0, "delta": 0.0, "other": 0.0}
    for event in prof.key_averages():
        total = event.device_time_total / 1e3 / calls  # us -> ms per call
        name = event.key
        if "attention_forward" in name:
            families["forward"] += total
        elif "attention_backward_kv" in name:
            families["dkdv"] += total
        elif "attention_backward_q" in name:
            families["dq"] += total
        elif "attention_backward_delta" in name:
            families["delta"] += total
        elif total > 0:
            families["other"] += total
    return {**{k: round(v, 4) for k, v in families.items()}, "wall": round(wall, 4)}


def use_configs(choose) -> None:
    """Make the next calls take their block sizes from ``choose`` (``configs_for``'s
    signature): the plans remembered with the old ones are dropped."""
    triton_backend.configs_for = choose
    triton_backend.forget_plans()


def with_backward(change: dict):
    """Make every call take the default configs with ``change`` applied to the backward's."""

    def patched(*args, **kwargs):
        forward, backward = configs_for(*args, **kwargs)
        return forward, replace(backward, **change)

    use_configs(patched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384],
                        help="lengths profiled")  # fmt: skip
    parser.add_argument("--sweep-length", type=int, default=16384, help="length swept")
    parser.add_argument(
        "--group",
        type=int,
        default=1,
        help="query heads per key/value head (16 query heads; 4: GQA as Llama's)",
    )
    parser.add_argument("--json", default="bench-results/gpu_backward_sweep.json")
    args = parser.parse_args()
    gpu.require_cuda("gpu_backward_sweep.py")
    warnings.filterwarnings("ignore")
    print(f"machine: {benchlib.machine('triton')} {torch.cuda.get_device_name()}", flush=True)
    causal = frozenset({"CAUSAL"})  # the configs of a light call (configs.is_light)
    lists = tile_lists(masks.causal(), 4096, 4096, "cpu")  # shared by every head, as the sweep's
    pack = pack_of(args.group, lists, torch.bfloat16)  # the library's rule, groups of 3 included
    print("default configs:", configs_for(args.head_dim, args.head_dim, torch.bfloat16, causal,
                                           args.group, pack=pack), flush=True)  # fmt: skip
    rows = []
    for length in args.lengths:
        q, k, v = (torch.randn(1, heads, length, args.head_dim, device="cuda",
                               dtype=torch.bfloat16, requires_grad=True)
                   for heads in (16, 16 // args.group, 16 // args.group))  # fmt: skip
        grad = torch.randn_like(q)
        for name in ("causal", "window", "documents"):
            mask = gpu.mask_of(name, length)[0]  # the masks of benchmarks/gpu.py

            def step(mask=mask, q=q, k=k, v=v, grad=grad):
                atenea.attention(q, k, v, mask=mask, backend="triton").backward(grad)

            use_configs(configs_for)
            row = {"what": "profile", "mask": name, "L": length, "group": args.group,
                   **kernel_times(step)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
            if length != args.sweep_length:
                continue
            # the dK/dV pass as it ran until stop 27 at D=128: keeping its bounds (EVEN off),
            # for spills the check misread; its EVEN build spills a little in its loop (Triton
            # 3.6: 17 of 477 instructions a step) and runs 17% fewer (docs/benchmarks.md#gpu)
            row = {"what": "dkdv", "mask": name, "L": length, "group": args.group,
                   "config": "defaults, bounds kept (EVEN off)"}  # fmt: skip
            real = launch.attention_backward_kv
            launch.attention_backward_kv = _without_even(real)
            try:
                row["ms"] = kernel_times(step, calls=5)["dkdv"]
            finally:
                launch.attention_backward_kv = real
            print(json.dumps(row), flush=True)
            rows.append(row)
            for pass_name, candidates in (("dkdv", KV_CANDIDATES), ("dq", Q_CANDIDATES)):
                for candidate in candidates:
                    m, n, warps, stages = candidate[:4]
                    if pass_name == "dkdv":
                        change = dict(block_m1=m, block_n1=n, kv_warps=warps, kv_stages=stages,
                                      kv_direct=candidate[4])  # fmt: skip
                    else:
                        change = dict(block_m2=m, block_n2=n, num_warps=warps, num_stages=stages)
                    with_backward(change)
                    row = {"what": pass_name, "mask": name, "L": length, "group": args.group,
                           "config": list(candidate)}  # fmt: skip
                    try:
                        row["ms"] = kernel_times(step, calls=5)[pass_name]
                    except Exception as error:  # noqa: BLE001 - a candidate that fails says why
                        row["error"] = f"{type(error).__name__}: {str(error)[:100]}"
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        use_configs(configs_for)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
