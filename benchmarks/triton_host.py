"""The host's part of one Triton attention call, measured without a GPU.

The kernels are replaced by launches that do nothing, so what is timed is atenea's Python,
autograd and the empty allocations of one cached forward+backward (the tile lists and the plan
built once, as in a training loop), and Triton's own launch path (its binder and cache key,
per kernel, on the arguments atenea passes). ``transfer.OpRecorder`` over one call lists the
ATen ops it runs: a read back from the device (``transfer.WAITING_OPS``, a copy to
the CPU) would be one.

    python benchmarks/triton_host.py [--length 4096] [--mask window]

B=1, H=16, D=128, bf16, as in ``gpu.py``. Runs Triton's interpreter only to import the kernels
(``TRITON_INTERPRET=1`` is set here); nothing is interpreted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # import the kernels without a GPU; none is launched
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atenea  # noqa: E402
import benchlib  # noqa: E402
from atenea import masks  # noqa: E402
from atenea.attention.backends.triton import launch  # noqa: E402
from atenea.attention.transfer import OpRecorder  # noqa: E402

KERNELS = ("attention_forward", "attention_backward_kv", "attention_backward_q",
           "attention_backward_delta")  # fmt: skip
MASKS = {"causal": masks.causal(), "window": masks.sliding_window(1024)}


class Recorded:
    """A kernel stand-in: ``kernel[grid](*args, **kwargs)`` keeps the arguments, runs nothing."""

    def __init__(self):
        self.call = None

    def __getitem__(self, grid):
        return lambda *args, **kwargs: setattr(self, "call", (args, kwargs))


def per_call_ms(step, calls: int, rounds: int = 10) -> float:
    """Milliseconds per call: the best of ``rounds`` rounds of ``calls // rounds`` calls (a
    shared machine's neighbours only ever add time)."""
    for _ in range(10):
        step()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(max(1, calls // rounds)):
            step()
        best = min(best, (time.perf_counter() - started) / max(1, calls // rounds))
    return best * 1e3


def launch_path_us(real, args, kwargs, calls: int = 2000) -> float:
    """Triton's binder and cache key for one launch of ``real`` with these arguments, compiled
    for sm_90 (no driver needed)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, compute_cache_key, create_function_from_signature

    function = JITFunction(real.fn)
    binder = create_function_from_signature(
        function.signature, function.params, make_backend(GPUTarget("cuda", 90, 32))
    )
    cache = {}

    def launch_path():
        compute_cache_key(cache, *binder(*args, **kwargs)[1:])

    return per_call_ms(launch_path, calls) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--mask", choices=list(MASKS), default="window")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps({"machine": benchlib.machine("triton")}))
    real = {name: getattr(launch, name) for name in KERNELS}
    stand_ins = {name: Recorded() for name in KERNELS}
    for name, stand_in in stand_ins.items():
        setattr(launch, name, stand_in)
    q, k, v = (torch.randn(1, 16, args.length, 128, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))  # fmt: skip
    grad = torch.randn_like(q)
    mask = MASKS[args.mask]

    def forward():
        return atenea.attention(q, k, v, mask=mask, backend="triton")

    def forward_backward():  # autograd.grad: no .grad sums, which a GPU does in a kernel
        torch.autograd.grad(forward(), (q, k, v), grad)

    forward_backward()
    with OpRecorder() as ops:
        forward_backward()
    reads = sorted(ops.waits() | {name for name in ops.names if "_to_copy" in name})
    row = {
        "mask": args.mask, "L": args.length,
        "forward_ms": round(per_call_ms(forward, args.calls), 3),
        "forward_backward_ms": round(per_call_ms(forward_backward, args.calls), 3),
        "aten_ops": sorted(ops.names), "reads_back": reads,
        "launch_us": {name: round(launch_path_us(real[name], *stand_ins[name].call), 1)
                      for name in KERNELS},
    }  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
