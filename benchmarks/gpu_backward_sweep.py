"""The Triton kernel's backward on a GPU: where its time goes, and which block sizes make it
fastest. Chooses the ``BACKWARD`` entry of ``configs.py`` for bf16 at one head size.

    python benchmarks/gpu_backward_sweep.py [--head-dim 128] [--lengths 16384] [--group 4]
        [--winners F] [--jobs 12]

1. A profile of forward + backward (``torch.profiler``, CUDA kernel times summed over 10 calls)
   per mask (causal, sliding window 1024, 8 documents) at each of ``--lengths``: the forward
   kernel, the dK/dV pass, the dQ pass, the delta pass and everything else (gradient sums),
   against the wall time per call. Kernel time well under the wall time means the GPU waits
   for the host.
2. Candidate block sizes for each pass apart (the two passes are separate kernels): GPU time of
   that pass per call, in ms, per mask, at ``--sweep-length``; for dK/dV also the tiles'
   orientation (``kv_direct``: queries down, K and V from shared memory). The default first,
   then the dK/dV pass with its default blocks but without ``EVEN`` (the full tiles checking
   their bounds: what it ran at D=128 until stop 27), then the other candidates, each at every
   mask before the next, so a run stopped at its time limit has whole candidates. A candidate
   that does not compile says why. ``--jobs N`` compiles them all first in N processes.
3. ``--winners F``: the fastest candidate of each pass over the three masks (``triton_tuning.
   best_backward``), written even when the run is stopped (Ctrl-C, ``timeout -s INT``);
   ``python benchmarks/gpu.py --only attention --backward-tuning F`` times the table with it.

B=1, H=16, bf16. Times are means of CUDA kernel durations from the profiler.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import torch

import atenea
from atenea import masks
from atenea.attention.backends.tile_lists import tile_lists
from atenea.attention.backends.triton.configs import configs_for
from atenea.attention.backends.triton.launch import pack_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import gpu  # noqa: E402
from triton_tuning import (  # noqa: E402
    BoundsKept,
    candidate_of,
    change_of,
    compile_ahead,
    inputs,
    with_backward,
    write_winners,
)

MASKS = ("causal", "window", "documents")
BOUNDS_KEPT = "defaults, bounds kept (EVEN off)"  # the config of the dK/dV rows without EVEN

# (block_m1, block_n1, kv_warps, kv_stages, kv_direct, kv_tma) for dK/dV; (block_m2, block_n2,
# warps, stages) for dQ. Most telling first (a run stopped at its limit keeps its first rows),
# after the defaults: 128x64 on 8 warps queries down with Q and dO by TMA, the fewest
# instructions a pair without a spill (Triton 3.6, causal, EVEN: 417 a full step and 547-626 a
# partial one, 0.407 a pair), then the same without TMA (453, 0.442; the default: 477 with 17
# spill ops, 0.466), the default blocks queries down (447, 13 spill ops), one stage (64, 64, 4,
# 1: 466 and 11 transposed, 452 and 10 queries down; no prefetch), the others (every
# candidate's instructions and spills: docs/benchmarks.md#gpu, stops 28-30).
KV_CANDIDATES = [(128, 64, 8, 2, True, True), (128, 64, 8, 2, True, False),
                 (64, 64, 4, 2, True, False), (64, 64, 4, 1, False, False),
                 (64, 64, 4, 1, True, False), (64, 128, 8, 2, False, False),
                 (32, 128, 8, 2, False, False), (32, 64, 4, 2, False, False),
                 (32, 64, 4, 3, False, False), (64, 64, 4, 2, True, True)]  # fmt: skip
# dQ: the default blocks with the full tiles' K and V by TMA first (Triton 3.6, D=128, EVEN:
# 298-305 instructions a full step against 325-337, no spills), the rest as timed at stop 22.
Q_CANDIDATES = [(64, 64, 4, 2, True), (128, 64, 8, 2, False), (128, 64, 8, 2, True),
                (128, 32, 4, 3, False), (64, 32, 4, 3, False), (128, 64, 8, 3, False),
                (64, 64, 4, 3, False)]  # fmt: skip


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


# Per head size, the dK/dV candidates the SASS favours there, moved to the front: at D=64,
# 64x64 on 4 warps queries down with TMA (Triton 3.6: 323 instructions a full step, 0.315 a
# pair, against the default 64x128 8-warp transposed block's 351 and 0.343), then without TMA
KV_FIRST = {64: [(64, 64, 4, 2, True, True), (64, 64, 4, 2, True, False)]}


def _sweep_plan(defaults: dict, head_dim: int = 128) -> list[tuple[str, tuple | None]]:
    """``(pass, candidate)`` in the order they are timed: each pass's default first, the dK/dV
    default with its bounds kept (candidate None), then the two lists in turn (a run stopped
    at its limit has the most telling of both), the head size's ``KV_FIRST`` leading."""
    plan = [("dkdv", defaults["dkdv"]), ("dq", defaults["dq"]), ("dkdv", None)]
    first = KV_FIRST.get(head_dim, [])
    ordered = first + [c for c in KV_CANDIDATES if c not in first]
    kv = [("dkdv", c) for c in ordered if c != defaults["dkdv"]]
    q = [("dq", c) for c in Q_CANDIDATES if c != defaults["dq"]]
    for pair in itertools.zip_longest(kv, q):
        plan += [entry for entry in pair if entry is not None]
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--head-dim", type=int, default=128, help="D of q, k and v (bf16)")
    parser.add_argument("--lengths", type=int, nargs="*", default=[4096, 16384],
                        help="lengths profiled (none: no profile)")  # fmt: skip
    parser.add_argument("--sweep-length", type=int, default=16384, help="length swept")
    parser.add_argument(
        "--group",
        type=int,
        default=1,
        help="query heads per key/value head (16 query heads; 4: GQA as Llama's)",
    )
    parser.add_argument("--json", default="bench-results/gpu_backward_sweep.json",
                        help="every row timed (also when stopped)")  # fmt: skip
    parser.add_argument("--winners", help="write each pass's fastest candidate here (JSON)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes compiling the candidates before the timing")  # fmt: skip
    args = parser.parse_args()
    gpu.require_cuda("gpu_backward_sweep.py")
    warnings.filterwarnings("ignore")
    print(f"machine: {benchlib.machine('triton')} {torch.cuda.get_device_name()}", flush=True)
    causal = frozenset({"CAUSAL"})  # the configs of a light call (configs.is_light)
    lists = tile_lists(masks.causal(), 4096, 4096, "cpu")  # shared by every head, as the sweep's
    pack = pack_of(args.group, lists, torch.bfloat16)  # the library's rule, groups of 3 included
    backward = configs_for(args.head_dim, args.head_dim, torch.bfloat16, causal, args.group,
                           pack=pack)[1]  # fmt: skip
    defaults = {name: candidate_of(name, backward) for name in ("dkdv", "dq")}
    print("default configs:", backward, flush=True)
    plan = _sweep_plan(defaults, args.head_dim)
    rows: list[dict] = []

    def step_of(name: str, length: int):
        """One forward+backward of the sweep's call under mask ``name``."""
        q, k, v = inputs(args.head_dim, args.group, length)
        mask, grad = gpu.mask_of(name, length)[0], torch.randn_like(q)
        return lambda: atenea.attention(q, k, v, mask=mask, backend="triton").backward(grad)

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        rows.append(row)

    def timed(row: dict, step, pass_name: str, calls: int = 5) -> None:
        try:
            row["ms"] = kernel_times(step, calls=calls)[pass_name]
        except Exception as error:  # noqa: BLE001 - a candidate that fails says why
            row["error"] = f"{type(error).__name__}: {str(error)[:100]}"
        record(row)

    # (pass, candidate, mask) whose first call failed in a worker: not run again here, where
    # a fault on the device (a never-run TMA build, say) would fail every row after it
    failed_ahead: dict[tuple, str] = {}
    try:
        if args.jobs > 1:
            started = time.perf_counter()
            keys = [(p, c, name) for p, c in plan for name in MASKS]
            jobs = [dict(head_dim=args.head_dim, group=args.group, length=args.sweep_length,
                         mask=name, change=change_of(p, c) if c else {}, bounds_kept=c is None)
                    for p, c, name in keys]  # fmt: skip
            try:
                reasons = compile_ahead(jobs, args.jobs)
            except Exception as error:  # noqa: BLE001 - a broken pool: time without it
                print(f"compiling ahead failed ({type(error).__name__}: {error}); each "
                      "candidate compiles at its first call instead", flush=True)  # fmt: skip
                reasons = [None] * len(jobs)
            failed_ahead = {key: why for key, why in zip(keys, reasons) if why is not None}
            seconds = time.perf_counter() - started
            print(f"compiled {len(jobs)} calls ahead in {args.jobs} processes, {seconds:.0f} s "
                  f"({len(failed_ahead)} failed)", flush=True)  # fmt: skip
        with_backward({})
        for length in args.lengths:
            for name in MASKS:
                record({"what": "profile", "mask": name, "L": length, "group": args.group,
                        **kernel_times(step_of(name, length))})  # fmt: skip
        steps = {name: step_of(name, args.sweep_length) for name in MASKS}
        for pass_name, candidate in plan:
            for name in MASKS:
                # candidate None: the dK/dV pass as it ran until stop 27 at D=128, keeping its
                # bounds (EVEN off); its EVEN build spills a little in its loop (Triton 3.6: 17
                # of 477 instructions a step) and runs 17% fewer (docs/benchmarks.md#gpu)
                row = {"what": pass_name, "mask": name, "L": args.sweep_length,
                       "group": args.group,
                       "config": list(candidate) if candidate else BOUNDS_KEPT}  # fmt: skip
                if (pass_name, candidate, name) in failed_ahead:
                    record({**row, "error": "first call: " + failed_ahead[pass_name, candidate,
                                                                          name]})  # fmt: skip
                    continue
                with_backward(change_of(pass_name, candidate) if candidate else {})
                with BoundsKept() if candidate is None else contextlib.nullcontext():
                    timed(row, steps[name], pass_name)
    except KeyboardInterrupt:
        print("stopped: writing what was timed", flush=True)
    finally:
        with_backward({})
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        if args.winners:
            winners = write_winners(args.winners, rows, defaults, head_dim=args.head_dim,
                                    group=args.group, length=args.sweep_length)  # fmt: skip
            if winners is None:
                print("winners: none (no candidate beside a default timed at every mask)")
            else:
                print("winners:", json.dumps(winners["change"]), flush=True)


if __name__ == "__main__":
    main()
