"""What every benchmark script shares: the machine's description and interleaved timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from importlib import import_module
from pathlib import Path

import torch

import atenea


def machine(*packages: str) -> dict:
    """CPU model, cores, torch threads, versions (torch, Python, atenea and ``packages``) and
    the load average when the run starts (the machine may be shared)."""
    model = platform.processor()
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():  # the first processor's block is enough
                break
        model = fields.get("model name", model)
        # A virtual machine may name only the vendor ("AMD EPYC"): the family and model tell
        # two hosts apart, whose products' speeds differ (docs/benchmarks.md, Models).
        if "cpu family" in fields:
            model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    except OSError:
        pass
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "atenea": atenea.__version__,
        "load_average": os.getloadavg(),
    }
    for name in packages:
        info[name.replace("-", "_")] = import_module(name.replace("-", "_")).__version__
    return info


def timed_together(functions: dict, reps: int, clock=time.perf_counter) -> dict:
    """Median seconds of each function, run in turn within every repetition, so that a slow
    moment of a shared machine hits all contenders alike. One warm-up round first. Returns
    ``{name: median, ..., "samples": {name: [seconds, ...]}}``."""
    times = {name: [] for name in functions}
    for repetition in range(reps + 1):
        for name, function in functions.items():
            start = clock()
            function()
            if repetition:
                times[name].append(clock() - start)
    out: dict = {name: statistics.median(values) for name, values in times.items()}
    out["samples"] = times
    return out


PEAK_RSS_PRELUDE = '''
def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

def reset_peak():
    """VmHWM back to the current size (ru_maxrss would carry the *parent's* peak, which Linux
    keeps across fork and exec); returns the current resident size in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS")
'''
"""Code to prepend to a fresh-process measurement: ``before = reset_peak()``, run, then
``status_kib("VmHWM") - before`` is the call's peak growth in KiB."""
