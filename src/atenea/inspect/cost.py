"""What the ``L x L`` matrix costs, measured: one head of attention at growing lengths, on three
paths, with the time and the peak memory of each and the exponent of their growth.

- ``literal``: the seven steps as written (``backend="reference"``): the whole score matrix;
- ``fused``: PyTorch's fused kernel (``backend="sdpa"``): the same ``L x L`` work, never the
  matrix in memory;
- ``window``: a sliding window (``masks.sliding_window(window)`` on the tiled backend): each
  query sees ``window`` keys, so work and memory grow like ``L``.

Memory is the peak of the tensors a path creates beyond its inputs. On CUDA that is
``torch.cuda.max_memory_allocated``; on the CPU it is counted by ``PeakTracker``, which sees
every tensor PyTorch's operators return (a fused kernel's private scratch is not seen). A path
is stopped before a length whose predicted memory would not fit in what the machine has free.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from atenea.attention import masks
from atenea.attention.core import attention

PATHS = ("literal", "fused", "window")
GROWTH = {"literal": 2.0, "fused": 1.0, "window": 1.0}  # how memory grows, to predict the next


@dataclass
class CostPoint:
    path: str
    length: int
    seconds: float
    peak_bytes: int


@dataclass
class CostRun:
    """Every measured point, the paths stopped early (path -> (length, bytes needed, bytes
    free)), and the fitted exponents (path -> (time, memory))."""

    points: list[CostPoint] = field(default_factory=list)
    stopped: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    exponents: dict[str, tuple[float, float]] = field(default_factory=dict)


class PeakTracker(TorchDispatchMode):
    """Counts the bytes of the tensors returned by PyTorch operators while active, freeing them
    as they die, and keeps the peak. ``peak`` is in bytes."""

    def __enter__(self):
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, size) in list(self.live.items()):  # what died since the last operator
            if ref.expired():
                self.current -= size
                del self.live[key]
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def one_head(path: str, q, k, v, window: int):
    """Attention of one head ``q, k, v (1, 1, L, D)`` on ``path``."""
    if path == "literal":
        return attention(q, k, v, backend="reference")
    if path == "fused":
        return attention(q, k, v, backend="sdpa")
    return attention(q, k, v, mask=masks.sliding_window(window), backend="blocks")


def free_bytes(device: torch.device) -> int:
    """Memory this machine has free now: CUDA's free memory, or the kernel's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30  # no /proc: assume a small machine


def measure(path, length, dim, window, device, repeats) -> CostPoint:
    """The fastest of at least ``repeats`` calls (after one warm-up; more calls while they add
    up to under a tenth of a second: on a busy machine the fastest run is the one least
    disturbed) and the peak memory of one call."""
    generator = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 1, length, dim, generator=generator).to(device) for _ in range(3))
    with torch.no_grad():
        one_head(path, q, k, v, window)  # warm-up: first-call costs are not the path's
        times: list[float] = []
        while len(times) < repeats or (sum(times) < 0.1 and len(times) < 50):
            _sync(device)
            start = time.perf_counter()
            one_head(path, q, k, v, window)
            _sync(device)
            times.append(time.perf_counter() - start)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            one_head(path, q, k, v, window)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            with PeakTracker() as tracker:
                one_head(path, q, k, v, window)
            peak = tracker.peak
    return CostPoint(path, length, min(times), peak)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predicted_bytes(path: str, length: int, dim: int, window: int, earlier: list[CostPoint]):
    """Memory a path will need at ``length``: its last measurement scaled by how it grows, or,
    before any, a count of its largest tensors (float32)."""
    if earlier:
        last = earlier[-1]
        return int(last.peak_bytes * (length / last.length) ** GROWTH[path]) + 3 * length * dim * 4
    keys = {"literal": length, "fused": dim, "window": min(window, length) + dim}[path]
    return 4 * length * keys * 4 + 4 * length * dim * 4


def fit_exponent(lengths, values) -> float:
    """The slope of ``log(value)`` against ``log(length)``: ``value ~ length ** slope``."""
    xs = [math.log(x) for x in lengths]
    ys = [math.log(max(y, 1e-12)) for y in values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


def run_cost(
    lengths, *, paths=PATHS, dim: int = 64, window: int = 256, repeats: int = 3,
    device="cpu", max_bytes: int | None = None, progress=None,
) -> CostRun:  # fmt: skip
    """Measure every path at every length (shortest first). A path whose predicted memory at
    the next length exceeds ``max_bytes`` (default: 80% of what is free) stops there.
    ``progress``: called with ``(path, length)`` before each measurement."""
    device = torch.device(device)
    run = CostRun()
    for path in paths:
        mine: list[CostPoint] = []
        for length in sorted(lengths):
            need = predicted_bytes(path, length, dim, window, mine)
            limit = max_bytes if max_bytes is not None else int(0.8 * free_bytes(device))
            if need > limit:
                run.stopped[path] = (length, need, limit)
                break
            if progress is not None:
                progress(path, length)
            mine.append(measure(path, length, dim, window, device, repeats))
        run.points += mine
        if len(mine) >= 2:
            run.exponents[path] = (
                fit_exponent([p.length for p in mine], [p.seconds for p in mine]),
                fit_exponent([p.length for p in mine], [p.peak_bytes for p in mine]),
            )
    return run
