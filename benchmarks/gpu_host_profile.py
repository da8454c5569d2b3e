"""Where the time goes in one Triton attention call on a GPU, host and device.

On the H200 a 4k forward+backward under a 1024 window took 2.05 ms per call while its kernels
summed to 0.72 ms, and with 8 documents (kernels of a few hundred microseconds) 1.16 ms, where
the forward alone took 0.12: the backward's part waited on something that a CPU run with the
kernels stubbed (``triton_host.py``: 0.2-0.3 ms of host per forward+backward) does not show.
This script finds out what.

    python benchmarks/gpu_host_profile.py [--length 4096] [--masks window causal] [--calls 50]
        [--trace-dir FOLDER]

Per mask, for atenea's ``triton`` backend and compiled FlexAttention side by side:

1. ``host_ms``: wall time per call when the host never waits (no synchronisation inside the
   loop), against ``gpu_ms``, the median time per call (``do_bench``, as ``gpu.py``).
   ``host_ms`` close to ``gpu_ms`` or above it: host-bound. ``device_allocs``: how often a call's
   allocations went past the caching allocator to the driver (``cudaMalloc``/``cudaFree``).
2. ``syncs``: the first operation that makes the host wait for the GPU during one
   forward+backward, caught by ``torch.cuda.set_sync_debug_mode("error")`` (None: no sync).
3. ``split_us`` (atenea only): host microseconds per call in ``launch.run_forward`` and
   ``launch.run_backward`` and in each kernel's launch (``kernel[grid](...)``), on whichever
   thread runs them: autograd runs a CUDA backward on its own device thread, which a cProfile
   of the calling thread never sees (this script's first version profiled that way).
4. ``timeline``: from a ``torch.profiler`` trace of the calls, per call: the kernels' busy
   time, the span from the first kernel's start to the last one's end, the idle gaps between
   consecutive kernels grouped by the pair around them (a wait before the backward shows as a
   long gap after the forward's last kernel), and the CUDA API calls that took the most host
   time (a ``cudaStreamSynchronize`` or ``cudaMemcpy`` is a wait). With ``--trace-dir`` the
   Chrome traces are written there too (open in Perfetto).

B=1, H=16, D=128, bf16, as in ``gpu.py``. Needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
import gpu  # noqa: E402

KERNELS = ("attention_forward", "attention_backward_kv", "attention_backward_q",
           "attention_backward_delta")  # fmt: skip
PASSES = ("run_forward", "run_backward")


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


def _device_allocations() -> int:
    """Allocations and frees the caching allocator passed on to the driver so far."""
    stats = torch.cuda.memory_stats()
    return stats.get("num_device_alloc", 0) + stats.get("num_device_free", 0)


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


class TimedCalls:
    """While active, the module's kernels (``KERNELS``: ``kernel[grid](...)``) and functions
    (``PASSES``) are timed on the host, per name, on whichever thread calls them; a name run
    off the thread that entered is marked ``(other thread)``. They are looked up in the module
    at each call, so replacing them there reaches every caller."""

    def __init__(self, module, kernels=KERNELS, functions=PASSES):
        self.module, self.kernels, self.functions = module, kernels, functions
        self.seconds: Counter = Counter()
        self.lock = threading.Lock()

    def _add(self, name: str, seconds: float) -> None:
        if threading.get_ident() != self.thread:
            name += " (other thread)"
        with self.lock:
            self.seconds[name] += seconds

    def _timed(self, name: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - started)

        return timed

    def __enter__(self) -> TimedCalls:
        self.thread = threading.get_ident()
        self.saved = {name: getattr(self.module, name) for name in self.kernels + self.functions}
        for name in self.functions:
            setattr(self.module, name, self._timed(name, self.saved[name]))
        for name in self.kernels:
            setattr(self.module, name, _TimedKernel(self, name, self.saved[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name, real in self.saved.items():
            setattr(self.module, name, real)

    def per_call_us(self, calls: int) -> dict:
        return {name: round(s / calls * 1e6, 1) for name, s in sorted(self.seconds.items())}


class _TimedKernel:
    """``kernel[grid](...)`` with its launch timed (Triton's binder, cache key and launcher)."""

    def __init__(self, owner: TimedCalls, name: str, kernel):
        self.owner, self.name, self.kernel = owner, name, kernel

    def __getitem__(self, grid):
        return self.owner._timed(self.name, self.kernel[grid])


def _short(name: str) -> str:
    return name if len(name) <= 48 else name[:45] + "..."


# Kineto's categories of work on the device (kernels, and copies and fills, which run apart)
DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")


def timeline(trace: dict, calls: int, top: int = 6) -> dict:
    """Per call, from a Chrome trace of ``calls`` calls (``torch.profiler``'s export): the
    busy time of the kernels, copies and fills (``kernel_us``: the union of their intervals),
    ``span_us`` from the first one's start to the last one's end, the ``gaps`` between
    consecutive ones grouped by the pair around them (``[prev, next, count per call, us per
    call]``, longest first; ``prev`` is the one that ended last) and the CUDA runtime and
    driver calls by host time (``api``: ``[name, count per call, us per call]``), less the last
    ``cudaDeviceSynchronize``, ``traced``'s own (the calls never synchronize on purpose)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    kernels = sorted(
        (e for e in events if e.get("cat") in DEVICE_WORK and "dur" in e), key=lambda e: e["ts"]
    )
    busy, end, last = 0.0, float("-inf"), None  # last: the event that ends latest so far
    gaps: dict = defaultdict(lambda: [0, 0.0])
    for event in kernels:
        start, finish = event["ts"], event["ts"] + event["dur"]
        busy += max(0.0, finish - max(start, end))
        if last is not None and start > end:
            pair = gaps[(_short(last["name"]), _short(event["name"]))]
            pair[0] += 1
            pair[1] += start - end
        if finish > end:
            end, last = finish, event
    api: dict = defaultdict(lambda: [0, 0.0])
    calls_made = sorted((e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")
                         and "dur" in e), key=lambda e: e["ts"])  # fmt: skip
    drains = [e for e in calls_made if e["name"] == "cudaDeviceSynchronize"]
    for e in calls_made:
        if drains and e is drains[-1]:
            continue  # ``traced``'s own wait for the queue to drain, not the calls'
        api[e["name"]][0] += 1
        api[e["name"]][1] += e["dur"]
    span = (end - kernels[0]["ts"]) if kernels else 0.0

    def ranked(table: dict) -> list:  # longest total first; keys: a name or a pair
        rows = sorted(table.items(), key=lambda item: -item[1][1])[:top]
        return [[*(key if isinstance(key, tuple) else (key,)), round(n / calls, 2),
                 round(us / calls, 1)] for key, (n, us) in rows]  # fmt: skip

    return {
        "device_ops_per_call": round(len(kernels) / calls, 2),
        "kernel_us": round(busy / calls, 1),
        "span_us": round(span / calls, 1),
        "gaps": ranked(gaps),
        "api": ranked(api),
    }


def traced(step, calls: int, path: Path) -> dict:
    """``timeline`` of ``calls`` calls of ``step`` under ``torch.profiler`` (trace at ``path``)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    profiler.export_chrome_trace(str(path))
    return timeline(json.loads(path.read_text()), calls)


def profile_rows(name: str, length: int, calls: int, traces: Path) -> list[dict]:
    from atenea.attention.backends.triton import launch

    rows = []
    shape = (gpu.B, gpu.H, length, gpu.D)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))  # fmt: skip
    grad = torch.randn_like(q)
    contenders = gpu.attention_contenders(name, length)
    for label in ("atenea triton", "FlexAttention"):
        fn = contenders.get(label)
        if fn is None:
            continue
        for what, step in (
            ("fwd", lambda f=fn: f(q, k, v)),
            ("fwd+bwd", lambda f=fn: f(q, k, v).backward(grad)),
        ):
            row = {"mask": name, "L": length, "impl": label, "what": what}
            try:
                before = _device_allocations()
                row["host_ms"] = round(host_ms(step, calls), 4)
                # cudaMalloc/cudaFree past the allocator's cache: slow, and a free waits
                row["device_allocs"] = round((_device_allocations() - before) / (calls + 1), 2)
                row["gpu_ms"] = round(gpu.bench(step, quick=False), 4)
                row["syncs"] = first_sync(step)
                if label == "atenea triton":
                    with TimedCalls(launch) as timed:
                        host_ms(step, calls)
                    row["split_us"] = timed.per_call_us(calls + 1)  # host_ms's warm-up call
                slug = f"{name}_{length}_{label.split()[-1].lower()}_{what.replace('+', '_')}"
                row["timeline"] = traced(step, min(calls, 20), traces / f"trace_{slug}.json")
            except Exception as error:  # noqa: BLE001 - a row that fails says why
                row["error"] = f"{type(error).__name__}: {str(error)[:160]}"
            q.grad = k.grad = v.grad = None
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--masks", nargs="*", default=["window", "causal", "documents"])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--trace-dir", help="keep the Chrome traces here")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    gpu.require_cuda("gpu_host_profile.py")
    print(json.dumps({"machine": benchlib.machine("triton")}), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        traces = Path(args.trace_dir or scratch)
        traces.mkdir(parents=True, exist_ok=True)
        rows = [row for name in args.masks
                for row in profile_rows(name, args.length, args.calls, traces)]  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
