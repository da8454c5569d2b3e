"""Compile every kernel configuration for sm_90 (H100/H200) on a machine without a GPU and
report shared memory, registers and spills; exit 1 when one overflows the 227 KB a block may
use or spills registers. What Triton's interpreter cannot see, this does.

    python -m atenea.attention.backends.triton.check_sm90 [--dims 64 128] [--plain-only]

Each kernel is built twice per head size and dtype: plain (no mask, no modifier) and with every
feature on (every mask family, bitmaps, ALiBi, softcap, relative bias), the two ends of what a
call can ask. Registers and spills come from ``ptxas -v`` (the ``ptxas-blackwell`` Triton
bundles reads the PTX version Triton emits). Run with ``TRITON_INTERPRET`` unset.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from atenea.attention.backends.triton import configs as tuning
from atenea.attention.backends.triton.backward import attention_backward_kv, attention_backward_q
from atenea.attention.backends.triton.forward import attention_forward
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)
HALF_PTRS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV"}
FLOAT_PTRS = {"LSE", "DELTA", "DREL", "slopes_ptr", "relative_ptr"}
FLOAT_SCALARS = {"scale", "cap"}


def _signature(kernel, dtype: str) -> dict[str, str]:
    signature = {}
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
        elif name in HALF_PTRS:
            signature[name] = f"*{dtype}"
        elif name in FLOAT_PTRS:
            signature[name] = "*fp32"
        elif name == "bitmap_ptr":
            signature[name] = "*u8"
        elif name.endswith(("counts", "index", "_ptr")):
            signature[name] = "*i32"
        elif name in FLOAT_SCALARS:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    return signature


def _constants(dim: int, dtype: str, everything: bool, blocks: dict) -> dict:
    return dict(
        GROUP=1, BLOCK_D=dim, BLOCK_DV=dim, SPARSE_Q=128, SPARSE_K=128,
        CAUSAL=everything, WINDOWED=everything, DOCUMENT=everything,
        PADDING=1 if everything else 0, PREFIX=everything, BITMAP=everything,
        ALIBI=1 if everything else 0, ALIBI_SYMMETRIC=False, CAP=everything,
        RELATIVE=2 if everything else 0, UPCAST=False,
        PRECISION="ieee" if dtype == "fp32" else "tf32", **blocks,
    )  # fmt: skip


def _ptxas(ptx: str) -> tuple[int, int]:
    """Registers per thread and spilled bytes (stores + loads) from ``ptxas -v``."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas-blackwell"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        result = subprocess.run(
            [str(tool), "-v", "--gpu-name=sm_90a", str(source), "-o", str(source) + ".cubin"],
            capture_output=True,
            text=True,
            check=True,
        )
    report = result.stdout + result.stderr
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report))
    return registers, spills


def compile_one(kernel, dim: int, dtype: str, everything: bool, blocks: dict, warps, stages):
    """Compile one kernel for sm_90: ``(shared bytes, registers, spilled bytes)``."""
    constants = _constants(dim, dtype, everything, blocks)
    source = ASTSource(fn=kernel, signature=_signature(kernel, dtype), constexprs=constants)
    compiled = triton.compile(
        source, target=TARGET, options={"num_warps": warps, "num_stages": stages}
    )
    registers, spills = _ptxas(compiled.asm["ptx"])
    return compiled.metadata.shared, registers, spills


def kernels_for(dim: int):
    """The three kernels of one head size with their blocks, warps and stages."""
    fwd, bwd = tuning.FORWARD[dim], tuning.BACKWARD[dim]
    fwd_blocks = dict(BLOCK_M=fwd.block_m, BLOCK_N=fwd.block_n)
    kv_blocks = dict(BLOCK_M=bwd.block_m1, BLOCK_N=bwd.block_n1)
    q_blocks = dict(BLOCK_M=bwd.block_m2, BLOCK_N=bwd.block_n2)
    return [
        ("forward", attention_forward, fwd_blocks, fwd.num_warps, fwd.num_stages),
        ("backward dK/dV", attention_backward_kv, kv_blocks, bwd.num_warps, bwd.num_stages),
        ("backward dQ", attention_backward_q, q_blocks, bwd.num_warps, bwd.num_stages),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="*", default=sorted(tuning.FORWARD))
    parser.add_argument("--dtypes", nargs="*", default=["bf16", "fp32"])
    parser.add_argument("--plain-only", action="store_true", help="skip the all-features build")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("check_sm90: unset TRITON_INTERPRET (the interpreter compiles nothing)")
        return 2
    failures = 0
    print(
        f"{'D':>4} {'dtype':>5} {'kernel':<15} {'variant':<8} {'shared KB':>9} {'regs':>5} spills"
    )
    for dim in args.dims:
        for dtype in args.dtypes:
            for name, kernel, blocks, warps, stages in kernels_for(dim):
                for everything in (False,) if args.plain_only else (False, True):
                    shared, registers, spills = compile_one(
                        kernel, dim, dtype, everything, blocks, warps, stages
                    )
                    bad = shared > tuning.SHARED_MEMORY_LIMIT or spills > 0
                    failures += bad
                    variant = "all" if everything else "plain"
                    print(
                        f"{dim:>4} {dtype:>5} {name:<15} {variant:<8} {shared / 1024:>9.1f} "
                        f"{registers:>5} {spills}{'  <-- FAILS' if bad else ''}",
                        flush=True,
                    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
