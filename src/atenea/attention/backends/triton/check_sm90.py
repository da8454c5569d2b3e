"""Compile every kernel configuration for sm_90 (H100/H200) on a machine without a GPU and
report shared memory, registers and spills; exit 1 when one overflows the 227 KB a block may
use or spills registers inside its loops beyond a small share. What Triton's interpreter
cannot see, this does.

    python -m atenea.attention.backends.triton.check_sm90 [--dtypes bf16] [--dims 128]

Each kernel of every entry of the tuning tables (bf16 and fp32) is built in the variants of
``VARIANTS``: plain (no mask, no modifier) up to every rule family with every modifier, or a
bitmap mask with every modifier (what one call can ask at most), the same bitmap with dead
keys (``LIVE``), and dropout with each of the two configurations it can meet (with and
without a per-pair table). The dK/dV pass is built again with ``GROUP`` query heads per key
head, both looping over them (per-head masks, groups that are no power of two; the loop keeps
more alive: ``configs.GROUPED_KV_ROWS``) and, in 16-bit, packed into each step; and in every
combination ``configs.is_light`` gives its larger blocks (``light_variants``, in the build
such a call runs). The three passes are built again, in 16-bit, for calls without score
modifiers or dropout (``EVEN_VARIANTS``: their full tiles skip the bounds, and the register
allocation changes with it).

Registers, stack and the loops' machine code are read from the cubin Triton itself assembled
(``sass``: its ptxas and options; Triton 3.9 and 3.6 differ). A spill costs where it runs, so
the check fails a configuration whose loops spend more than ``SPILL_SHARE`` of their
instructions on stack loads and stores (``LIGHT_SPILL_SHARE`` in the light dK/dV blocks), not
any stack at all. Only builds a call can run are compiled. Run with ``TRITON_INTERPRET``
unset.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

import triton
from atenea.attention.backends.triton import configs as tuning
from atenea.attention.backends.triton import sass
from atenea.attention.backends.triton.backward import (
    attention_backward_delta,
    attention_backward_kv,
)
from atenea.attention.backends.triton.backward_q import attention_backward_q
from atenea.attention.backends.triton.forward import attention_forward
from atenea.attention.backends.triton.launch import (
    DELTA_STAGES,
    DELTA_WARPS,
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
# and dK/dV passes built with ``EVEN``
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


# The share of a loop's instructions that may be spill traffic (stack loads and stores each
# step). On an H200 (stop 22) the light 64x64 dK/dV build at D=128 spent 9 of 607 instructions
# a step (1.5%) on them and still ran 17% faster than the 32x64 build that spilled none (3.86
# vs 4.63 ms, causal 16k): its time per score pair followed its instruction count per pair
# (0.83 vs 0.85), so a few spills cost what any instruction costs. Past a few per cent they
# grow with the blocks, and a smaller block is the better trade.
SPILL_SHARE = 0.02

# The light dK/dV blocks (``configs.LIGHT_KV``: 64x64 at 16-bit D=128) fill 255 registers a
# thread and spill up to 4.0% of a step (Triton 3.6: key padding, 18 of 455; Triton 3.9 up to
# 2.5%). In the full tiles' loop they take 6.5-20% fewer instructions per score pair than
# 32x64, which spills nothing (Triton 3.6; 3.9: 14-24%), so to lose, a stack load or store
# would have to cost 3.8-13 instructions (3.9: 9 or more); at stop 22 the timing followed the
# instruction count as if it cost one. ``benchmarks/triton_sass.py --kernels dK/dV --dims 128
# [--pack 4]``, with and without ``--launch 32 64 4 2``, gives the counts;
# ``gpu_backward_sweep.py`` (with ``--group 4``) times both blocks on a GPU.
LIGHT_SPILL_SHARE = 0.04


def light_blocks(job) -> bool:
    """Whether ``job`` builds the dK/dV pass with ``configs.LIGHT_KV``'s blocks."""
    name, dim, dtype, variant, group, pack, _ = job
    key = tuning.row_bytes(dim, dim, torch.float32 if dtype == "fp32" else torch.bfloat16)
    switched = switches(_all_variants()[variant])
    return name == "dK/dV" and tuning.takes_light_kv(key, switched, group, pack)


def allowed_share(job) -> float:
    """The spill share ``job`` may reach: ``LIGHT_SPILL_SHARE`` in the light dK/dV blocks,
    else ``SPILL_SHARE``."""
    return LIGHT_SPILL_SHARE if light_blocks(job) else SPILL_SHARE


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


@dataclass(frozen=True)
class Usage:
    """What one configuration's cubin uses: shared memory (bytes a block), registers and stack
    (bytes a thread: spilled registers), and per loop (the partial tiles' steps, then the full
    tiles') its instructions and the stack loads and stores among them (read only where there
    is a stack: without one there is nothing to spill, and disassembling takes seconds)."""

    shared: int
    registers: int
    stack: int
    loops: tuple[int, ...]
    loop_spills: tuple[int, ...]

    @property
    def spill_share(self) -> float:
        """The largest share of a loop's instructions that are spill traffic."""
        shares = [spills / length for spills, length in zip(self.loop_spills, self.loops)]
        return max(shares, default=0.0)


def usage_of(compiled) -> Usage:
    """``compiled``'s use of the chip, read from the cubin Triton assembled (``sass``)."""
    registers, stack = sass.resources(compiled.asm["cubin"])
    bodies = sass.loops(sass.disassemble(compiled.asm["cubin"])) if stack else []
    return Usage(
        compiled.metadata.shared, registers, stack,
        tuple(len(body) for body in bodies), tuple(sass.spill_ops(body) for body in bodies),
    )  # fmt: skip


def verdict(job, used: Usage) -> str:
    """``"fails"`` (over the shared memory a block may use, or a loop spending more than
    ``allowed_share(job)`` on spills), ``"light"`` (over ``SPILL_SHARE``, within the light
    blocks' share) or ``""`` (fits)."""
    if used.shared > tuning.SHARED_MEMORY_LIMIT or used.spill_share > allowed_share(job):
        return "fails"
    return "light" if used.spill_share > SPILL_SHARE else ""


def compile_one(job):
    """Compile one kernel for sm_90: ``(job, (blocks, warps, stages), Usage)``. ``job``:
    ``(kernel name, head dim, dtype, variant name, group, pack, even)``."""
    compiled, launch = build(job)
    return job, launch, usage_of(compiled)


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
        sizes.update(PACK=pack, DIRECT=bwd.kv_direct, TMA=bwd.kv_tma)
    if name == "dQ":
        sizes.update(TMA=bwd.dq_tma)
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
        # a 16-bit call without modifiers or dropout runs the EVEN build (below), not this one
        if name == "delta" or dtype == "fp32" or switches(VARIANTS[variant]) & MODIFIERS
    ]
    jobs += [
        (name, dim, dtype, variant, 1, 1, True)
        for dtype in args.dtypes
        if dtype != "fp32"  # 16-bit calls only (launch.skips_bounds)
        for dim in CASES[dtype]
        if not args.dims or dim in args.dims
        for variant in EVEN_VARIANTS
        for name in args.kernels
        if name != "delta"
    ]
    if "dK/dV" in args.kernels:  # grouped queries: a loop over the heads, or packed in a step
        kv = [job for job in jobs if job[0] == "dK/dV"]
        jobs += [(*job[:4], GROUP, 1, job[6]) for job in kv]  # looped
        jobs += [(*job[:4], GROUP, GROUP, job[6]) for job in kv if job[2] == "bf16"]  # packed
        light = [
            job
            for dim in CASES["bf16"]
            if "bf16" in args.dtypes and (not args.dims or dim in args.dims)
            for group in (1, GROUP)
            for variant, switched in (light_variants().items() if args.light else ())
            # the build a 16-bit call runs: EVEN without score modifiers (launch.skips_bounds)
            for job in [("dK/dV", dim, "bf16", variant, group, group,
                         not switches(switched) & MODIFIERS)]
            if light_blocks(job)
        ]  # fmt: skip
        jobs += light
    failures = 0
    print(f"{'dtype':>5} {'D':>4} {'kernel':<8} {'variant':<28} {'blocks':>9} {'warps':>5} "
          f"{'stages':>6} {'shared KB':>9} {'regs':>5} {'stack':>5}  spills a step")  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:
        for job, (blocks, warps, stages), used in pool.map(compile_one, jobs):
            name, dim, dtype, variant, group, pack, even = job
            if group > 1:
                variant += f" G={group}" + (" packed" if pack > 1 else "")
            if even:
                variant += " even"
            found = verdict(job, used)
            failures += found == "fails"
            steps = ", ".join(f"{n}/{length}" for n, length in zip(used.loop_spills, used.loops))
            mark = {"fails": "  <-- FAILS", "light": "  (light: LIGHT_SPILL_SHARE)", "": ""}[found]
            print(
                f"{dtype:>5} {dim:>4} {name:<8} {variant:<28} {blocks[0]:>4}x{blocks[1]:<4} "
                f"{warps:>5} {stages:>6} {used.shared / 1024:>9.1f} {used.registers:>5} "
                f"{used.stack:>5}  {steps or '-'}{mark}",
                flush=True,
            )
    print(
        f"Triton {triton.__version__}; spills a step: stack loads and stores / instructions, "
        f"per loop; fails above {SPILL_SHARE:.0%} ({LIGHT_SPILL_SHARE:.0%} in the light blocks)"
    )
    print(f"{failures} configuration(s) fail" if failures else "every configuration fits")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
