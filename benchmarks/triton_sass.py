"""What the Triton kernels' inner loops execute on an H100/H200, read without a GPU.

Each kernel configuration is compiled for sm_90 here, as ``check_sm90`` does it, and its machine
code (SASS, from the ``nvdisasm`` Triton bundles) is read: the instructions of its two loops
(the partial tiles' steps, then the full tiles'), and in the full tiles' loop, where long
sequences spend their time, the instructions by kind: the tensor-core products (``HGMMA``),
the ``exp2`` unit (``MUFU``), float multiplies, fused multiply-adds, adds, selects and
conversions to 16 bits. Fewer instructions per step is no timing, but it is the one measure of
a kernel change this machine can take; run it at two commits to compare. ``/pair``: the full
loop's warp-instructions per score pair (instructions x warps / pairs a step), which compares
configurations of different blocks and warps.

    python benchmarks/triton_sass.py [--dims 128] [--kernels forward dQ] [--json out.json]
    python benchmarks/triton_sass.py --kernels dK/dV --dims 128 --variants light:CAUSAL \
        --launch 32 64 4 3     # other blocks, warps and stages than the tables'
    python benchmarks/triton_sass.py --kernels dK/dV --dims 128 --pack 4   # a group packed
    python benchmarks/triton_sass.py --kernels dK/dV --dims 128 --direct   # queries down
    python benchmarks/triton_sass.py --kernels dK/dV dQ --dims 128 --tma   # loads by TMA

Rows: D=64 and 128, bf16, the light mask families (and the plain call), the forward, dK/dV
and dQ passes with the blocks the tuning tables give them, built without and (``even``) with
``EVEN``, the build every 16-bit call without score modifiers or dropout runs
(``launch.skips_bounds``). ``stack``: bytes a thread of spilled registers; ``spills``: the
stack loads and stores among each loop's instructions (``check_sm90`` allows a few per cent).
The figures are those of the installed Triton's own ptxas (``sass``): run with another
Triton on ``PYTHONPATH`` (``make check-sm90 TRITON=3.6.0`` installs one) to see its builds.
Needs Triton, not a GPU (``TRITON_INTERPRET`` unset).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

# fused multiply-adds on: Triton 3.9's default, set so that it does not warn about it
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
import triton  # noqa: E402, F401  (before check_sm90 imports it)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from atenea.attention.backends.triton import check_sm90, sass  # noqa: E402

VARIANTS = ("plain", "light:CAUSAL", "light:WINDOWED", "light:DOCUMENT", "light:PREFIX")
KINDS = ("HGMMA", "MUFU", "FMUL", "FFMA", "FADD", "FSEL", "F2FP")


def row(name: str, dim: int, variant: str, even: bool, pack: int = 1) -> dict:
    job = (name, dim, "bf16", variant, pack, pack, even)
    compiled, (blocks, warps, stages) = check_sm90.build(job)
    registers, stack = sass.resources(compiled.asm["cubin"])
    bodies = sass.loops(sass.disassemble(compiled.asm["cubin"]))
    full = collections.Counter(bodies[-1]) if bodies else collections.Counter()
    # a warp issues each instruction once for its 32 threads: warp-instructions per score
    # pair compare configurations of different blocks and warps (the schedulers' work)
    per_pair = len(bodies[-1]) * warps / (blocks[0] * blocks[1]) if bodies else 0.0
    return {
        "kernel": name, "D": dim, "variant": variant.removeprefix("light:"), "even": even,
        "blocks": f"{blocks[0]}x{blocks[1]}", "warps": warps, "registers": registers,
        "stack": stack, "loops": [len(body) for body in bodies],
        "loop_spills": [sass.spill_ops(body) for body in bodies],
        "per_pair": round(per_pair, 3), **{kind: full[kind] for kind in KINDS},
    }  # fmt: skip


def launch_every_row(launch: list[int] | None, direct: bool, tma: bool = False) -> None:
    """Compile every row with these blocks, warps and stages (``launch``: M, N, warps,
    stages) instead of the tuning tables' (``gpu_backward_sweep.py``'s candidates are given
    so), with ``direct`` the dK/dV pass's tiles queries down (``BackwardConfig.kv_direct``),
    with ``tma`` the backward passes reading through TMA descriptors: dK/dV its Q and dO,
    dQ its full tiles' K and V (``kv_tma``, ``dq_tma``; the forward's K and V so took 1% more
    instructions a full step, stop 30)."""
    tables = check_sm90.tuning.configs_for

    def configs_for(*args, **kwargs):
        forward, backward = tables(*args, **kwargs)
        backward = replace(backward, kv_direct=direct, kv_tma=tma, dq_tma=tma)
        if launch is None:
            return forward, backward
        m, n, warps, stages = launch
        forward = replace(forward, block_m=m, block_n=n, num_warps=warps, num_stages=stages)
        backward = replace(backward, block_m1=m, block_n1=n, kv_warps=warps, kv_stages=stages,
                           block_m2=m, block_n2=n, num_warps=warps, num_stages=stages)  # fmt: skip
        return forward, backward

    check_sm90.tuning.configs_for = configs_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--kernels", nargs="*", default=["forward", "dK/dV", "dQ"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--launch", type=int, nargs=4, metavar=("M", "N", "WARPS", "STAGES"),
                        help="these blocks, warps and stages for every row")  # fmt: skip
    parser.add_argument(
        "--pack",
        type=int,
        default=1,
        help="dK/dV: this many query heads a key head, packed in each step",
    )
    parser.add_argument("--direct", action="store_true",
                        help="dK/dV: tiles queries down, K and V from shared memory")  # fmt: skip
    parser.add_argument("--tma", action="store_true",
                        help="dK/dV's Q and dO, dQ's K and V through TMA")  # fmt: skip
    args = parser.parse_args()
    if args.launch or args.direct or args.tma:
        launch_every_row(args.launch, args.direct, args.tma)
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("triton_sass.py: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    print(json.dumps({"machine": benchlib.machine("triton"), "target": "sm_90"}))
    header = f"{'kernel':<8}{'D':>4} {'variant':<9}{'even':>5} {'blocks':>7}{'warps':>6}"
    header += f"{'regs':>5}{'stack':>6}  {'loops (partial, full)':<22}{'spills':<9}{'/pair':>6}"
    header += "".join(f"{kind:>6}" for kind in KINDS)
    print(header)
    rows = []
    for dim in args.dims:
        for name in args.kernels:
            for variant in args.variants:
                for even in (False, True):
                    r = row(name, dim, variant, even, args.pack if name == "dK/dV" else 1)
                    rows.append(r)
                    print(
                        f"{r['kernel']:<8}{dim:>4} {r['variant']:<9}{'yes' if even else '':>5} "
                        f"{r['blocks']:>7}{r['warps']:>6}{r['registers']:>5}{r['stack']:>6}  "
                        f"{str(r['loops']):<22}{str(r['loop_spills']):<9}{r['per_pair']:>6.3f}"
                        + "".join(f"{r[kind]:>6}" for kind in KINDS),
                        flush=True,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
