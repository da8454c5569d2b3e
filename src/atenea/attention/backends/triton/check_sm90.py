"""Compile every kernel configuration for sm_90 (H100/H200) on a machine without a GPU and
report shared memory, registers and spills; exit 1 when one overflows the 227 KB a block may
use or spills registers. What Triton's interpreter cannot see, this does.

    python -m atenea.attention.backends.triton.check_sm90 [--dtypes bf16] [--dims 128]

Each kernel of every entry of the tuning tables (bf16 and fp32) is built in the variants of
``VARIANTS``: plain (no mask, no modifier) up to every rule family with every modifier, or a
bitmap mask with every modifier (what one call can ask at most), the same bitmap with dead
keys (``LIVE``), and dropout with each of the two configurations it can meet (with and
without a per-pair table). The dK/dV pass is built again with ``GROUP`` query heads per key
head, both looping over them (per-head masks, groups that are no power of two; the loop keeps
more alive: ``configs.GROUPED_KV_ROWS``) and, in 16-bit, packed into each step; and in every
combination ``configs.is_light`` gives its larger blocks (``light_variants``). The forward and
dQ passes are built again, in 16-bit, for calls without score modifiers or dropout
(``EVEN_VARIANTS``: their full tiles skip the bounds, and the register allocation changes with
it), and so is the dK/dV pass at the head dims that take it
(``launch.KV_EVEN_SPILLS``). Registers and spills come from ``ptxas -v`` (the
``ptxas-blackwell`` Triton bundles reads the PTX version Triton emits). Run with
``TRITON_INTERPRET`` unset.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import triton
from atenea.attention.backends.triton import configs as tuning
from atenea.attention.backends.triton.backward import (
    attention_backward_delta,
    attention_backward_kv,
    attention_backward_q,
)
from atenea.attention.backends.triton.forward import attention_forward
from atenea.attention.backends.triton.launch import (
    DELTA_STAGES,
    DELTA_WARPS,
    KV_EVEN_SPILLS,
    MODIFIERS,
    delta_rows,
)
from atenea.attention.backends.triton.plan import switches
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)
HALF_PTRS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV"}
FLOAT_PTRS = {"LSE", "DLSE", "DELTA", "DREL", "slopes_ptr", "relative_ptr"}
FLOAT_SCALARS = {"scale", "cap", "dropout_p"}
WIDE_SCALARS = {"seed"}  # dropout's Philox key: an int64 drawn per call


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
        elif name in ("bitmap_ptr", "live_ptr"):
            signature[name] = "*u8"
        elif name.endswith(("counts", "index", "_ptr")):
            signature[name] = "*i32"
        elif name in FLOAT_SCALARS:
            signature[name] = "fp32"
        elif name in WIDE_SCALARS:
            signature[name] = "i64"
        else:
            signature[name] = "i32"
    return signature


ALIGNED_INTS = {"q_len", "kv_len", "head_dim", "value_dim"}


def _alignment(kernel, signature: dict[str, str]) -> dict:
    """What a real launch tells the compiler about a typical call (B=1, H=16, L=4096, D=128,
    contiguous): pointers and strides are multiples of 16, so loads vectorize. Without it the
    compiler keeps one 64-bit address per element and the register counts mean nothing."""
    attrs = {}
    for position, param in enumerate(kernel.params):
        kind = signature[param.name]
        if kind.startswith("*") or param.name.startswith("stride") or param.name in ALIGNED_INTS:
            attrs[(position,)] = [["tt.divisibility", 16]]
    return attrs


# What a call can ask at once: the rule families and the bitmap exclude each other; a per-pair
# table (bitmap, relative bias) selects the configuration with one stage fewer.
VARIANTS = {
    "plain": dict(),
    "rules": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=1, PREFIX=True, ALIBI=1,
                  CAP=True),
    "rules+rel": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=1, PREFIX=True,
                      ALIBI=1, CAP=True, RELATIVE=2),
    # left padding (PADDING=2): another compare in the key checks; also how a window's or
    # packed documents' dead keys reach the kernel when there are fewer queries than keys
    "rules+left": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=2, PREFIX=True,
                       ALIBI=1, CAP=True),
    "bitmap+rel": dict(BITMAP=True, ALIBI=1, CAP=True, RELATIVE=2),
    # a bitmap mask with keys no query attends: the kernels check every key (LIVE)
    "bitmap+dead+rel": dict(BITMAP=True, LIVE=True, ALIBI=1, CAP=True, RELATIVE=2),
    # dropout draws a Philox number per pair, and takes smaller steps (configs.DROPOUT_PAIRS)
    "rules+drop": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=1, PREFIX=True,
                       ALIBI=1, CAP=True, DROPOUT=True),
    "bitmap+dead+rel+drop": dict(BITMAP=True, LIVE=True, ALIBI=1, CAP=True, RELATIVE=2,
                                 DROPOUT=True),
}  # fmt: skip
# 16-bit calls with no score modifier or dropout (``launch.skips_bounds``): the forward, dQ
# and (``Setup.even_kv``) dK/dV passes built with ``EVEN``
EVEN_VARIANTS = {
    "plain": dict(),
    "rules only": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=1, PREFIX=True),
    "rules only, left": dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=2, PREFIX=True),
    "bitmap only": dict(BITMAP=True),
    "bitmap+dead only": dict(BITMAP=True, LIVE=True),
}
KERNELS = ("forward", "dK/dV", "dQ", "delta")  # delta: one variant (it reads no mask)
# The head dims checked per dtype (together they reach every entry of the tables)
CASES = {"bf16": [16, 32, 64, 128, 256], "fp32": [16, 32, 64, 128, 256]}
GROUP = 4  # query heads per key head the dK/dV pass is compiled for besides 1
LIGHT_FAMILIES = dict(CAUSAL=True, WINDOWED=True, DOCUMENT=True, PADDING=1, PREFIX=True, ALIBI=1)


# Spills accepted, each with its bytes and why (every other spill fails the check): float32 is
# the exact path, not the fast one, and at these two corners of the dK/dV pass looping over a
# group's heads every other block or warp count compiled spilled as much or more
# (configs.GROUPED_KV_ROWS's search, stop 23). Keys: ``compile_one``'s jobs.
KNOWN_SPILLS = {
    # ptxas keeps 64 registers of 255 and spills 8-16 bytes anyway: its choice, not pressure;
    # 4 warps fix it here but spill 8-16 bytes in two other variants of the same entry
    ("dK/dV", 64, "fp32", "plain", GROUP, 1, False): 16,
    # 255 registers: 2 stages spilled 80 bytes, 4 warps 1,520, 2 warps 6,940, 16 warps 16
    ("dK/dV", 256, "fp32", "bitmap+dead+rel+drop", GROUP, 1, False): 16,
    # left padding looped over a group (first compiled stop 24): at 16x32, 8 warps, 2 stages
    # fit it but spill "rules" 48 bytes; 16x16 fit it but spill a dropout variant 16; 32x32
    # spill three others 32-56
    ("dK/dV", 32, "fp32", "rules+left", GROUP, 1, False): 16,
}


def light_variants() -> dict[str, dict]:
    """Every combination of rule families and ALiBi that ``configs.is_light`` lets take the
    larger dK/dV blocks with one head per step, by name (``light:CAUSAL+WINDOWED``): register
    use at 255 a thread is not monotone in what the kernel evaluates, so each one is compiled
    (and again with the heads of a group packed, those ``is_light`` allows there)."""
    variants = {}
    names = list(LIGHT_FAMILIES)
    for size in range(1, len(names) + 1):  # (none at all is VARIANTS' "plain")
        for chosen in itertools.combinations(names, size):
            if tuning.is_light(frozenset(chosen), group=1):
                variants["light:" + "+".join(chosen)] = {n: LIGHT_FAMILIES[n] for n in chosen}
    return variants


@functools.cache
def _all_variants() -> dict[str, dict]:
    """Every variant by name: ``VARIANTS``, ``EVEN_VARIANTS`` and the light ones."""
    return {**VARIANTS, **EVEN_VARIANTS, **light_variants()}


def _constants(dim: int, dtype: str, switched: dict, blocks: dict, group: int = 1) -> dict:
    constants = dict(
        GROUP=group, BLOCK_D=dim, BLOCK_DV=dim, SPARSE_Q=128, SPARSE_K=128,
        CAUSAL=False, WINDOWED=False, DOCUMENT=False, PADDING=0, PREFIX=False, BITMAP=False,
        LIVE=False,
        ALIBI=0, ALIBI_SYMMETRIC=False, CAP=False, RELATIVE=0, DROPOUT=False, UPCAST=False,
        PRECISION="ieee" if dtype == "fp32" else "tf32", **blocks,
    )  # fmt: skip
    constants.update(switched)
    return constants


def ptxas_usage(ptx: str) -> tuple[int, int]:
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


def compile_one(job):
    """Compile one kernel for sm_90: ``(job, (blocks, warps, stages), (shared bytes, registers,
    spilled bytes))``. ``job``: ``(kernel name, head dim, dtype, variant name, group, pack,
    even)``."""
    compiled, launch = build(job)
    registers, spills = ptxas_usage(compiled.asm["ptx"])
    return job, launch, (compiled.metadata.shared, registers, spills)


def build(job):
    """``job``'s kernel compiled for sm_90 (Triton's ``CompiledKernel``: ``asm["ptx"]``,
    ``asm["cubin"]``) and its launch ``(blocks, warps, stages)``, as a call of that kind gets
    them from the tuning tables."""
    name, dim, dtype, variant, group, pack, even = job
    if name == "delta":
        rows = delta_rows(dim)
        constants = dict(BLOCK_M=rows, BLOCK_DV=dim, HAS_DLSE=True)
        launch = ((rows, dim), DELTA_WARPS, DELTA_STAGES)
        return _compile_kernel(attention_backward_delta, dtype, constants, *launch[1:]), launch
    switched = _all_variants()[variant]
    torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    fwd, bwd = tuning.configs_for(dim, dim, torch_dtype, switches(switched), group, pack)
    kernel, blocks, warps, stages = {
        "forward": (attention_forward, (fwd.block_m, fwd.block_n), fwd.num_warps, fwd.num_stages),
        "dK/dV": (attention_backward_kv, (bwd.block_m1, bwd.block_n1), bwd.warps_kv,
                  bwd.stages_kv),
        "dQ": (attention_backward_q, (bwd.block_m2, bwd.block_n2), bwd.num_warps, bwd.num_stages),
    }[name]  # fmt: skip
    sizes = dict(BLOCK_M=blocks[0], BLOCK_N=blocks[1], EVEN=even)
    if name == "dK/dV":
        sizes["PACK"] = pack
    constants = _constants(dim, dtype, switched, sizes, group)
    return _compile_kernel(kernel, dtype, constants, warps, stages), (blocks, warps, stages)


def _compile_kernel(kernel, dtype: str, constants: dict, warps: int, stages: int):
    signature = _signature(kernel, dtype)
    source = ASTSource(
        fn=kernel, signature=signature, constexprs=constants, attrs=_alignment(kernel, signature)
    )
    return triton.compile(source, target=TARGET, options={"num_warps": warps, "num_stages": stages})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--dims", type=int, nargs="*", help="only these head dims")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--kernels", nargs="*", default=list(KERNELS), choices=list(KERNELS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--no-light",
        dest="light",
        action="store_false",
        help="skip the light dK/dV combinations (configs.is_light; 50 compilations)",
    )
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("check_sm90: unset TRITON_INTERPRET (the interpreter compiles nothing)")
        return 2
    jobs = [
        (name, dim, dtype, variant, 1, 1, False)
        for dtype in args.dtypes
        for dim in CASES[dtype]
        if not args.dims or dim in args.dims
        for variant in args.variants
        for name in args.kernels
        if name != "delta" or variant == args.variants[0]
    ]
    jobs += [
        (name, dim, dtype, variant, 1, 1, True)
        for dtype in args.dtypes
        if dtype != "fp32"  # 16-bit calls only (launch.skips_bounds)
        for dim in CASES[dtype]
        if not args.dims or dim in args.dims
        for variant in EVEN_VARIANTS
        for name in args.kernels
        if name in ("forward", "dQ") or (name == "dK/dV" and dim not in KV_EVEN_SPILLS)
    ]
    if "dK/dV" in args.kernels:  # grouped queries: a loop over the heads, or packed in a step
        kv = [job for job in jobs if job[0] == "dK/dV"]
        jobs += [(*job[:4], GROUP, 1, job[6]) for job in kv]  # looped
        jobs += [(*job[:4], GROUP, GROUP, job[6]) for job in kv if job[2] == "bf16"]  # packed
        light = [
            ("dK/dV", dim, "bf16", variant, group, group, even)
            for dim in CASES["bf16"]
            if "bf16" in args.dtypes and (not args.dims or dim in args.dims)
            and tuning.row_bytes(dim, dim, torch.bfloat16) in tuning.LIGHT_KV
            for group in (1, GROUP)
            for variant, switched in (light_variants().items() if args.light else ())
            if tuning.is_light(switches(switched), group, group)
            # no modifiers: the EVEN build where Setup.even_kv takes it
            for even in (False, True)
            if not even or (dim not in KV_EVEN_SPILLS and not switches(switched) & MODIFIERS)
        ]  # fmt: skip
        jobs += light
    failures = 0
    print(f"{'dtype':>5} {'D':>4} {'kernel':<8} {'variant':<28} {'blocks':>9} {'warps':>5} "
          f"{'stages':>6} {'shared KB':>9} {'regs':>5} spills")  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:
        for job, (blocks, warps, stages), (shared, regs, spills) in pool.map(compile_one, jobs):
            name, dim, dtype, variant, group, pack, even = job
            if group > 1:
                variant += f" G={group}" + (" packed" if pack > 1 else "")
            if even:
                variant += " even"
            bad = shared > tuning.SHARED_MEMORY_LIMIT or spills > KNOWN_SPILLS.get(job, 0)
            failures += bad
            print(
                f"{dtype:>5} {dim:>4} {name:<8} {variant:<28} {blocks[0]:>4}x{blocks[1]:<4} "
                f"{warps:>5} {stages:>6} {shared / 1024:>9.1f} {regs:>5} {spills}"
                f"{'  <-- FAILS' if bad else '  (known: KNOWN_SPILLS)' if spills else ''}",
                flush=True,
            )
    print(f"{failures} configuration(s) fail" if failures else "every configuration fits")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
