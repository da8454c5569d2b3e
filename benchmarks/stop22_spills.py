"""The dK/dV builds stop 22 timed on an H200 (commit 787795b: 64x64 and 32x64 blocks, 4 warps,
2 stages, causal, bf16, D=128), read with this tree's ``sass``: instructions and spill loads
and stores per loop, and warp-instructions per score pair of the full tiles' loop. The basis
of ``check_sm90.SPILL_SHARE`` (64x64: 9 spill ops in 607, /pair 0.593 against 32x64's 0.697;
timed 3.86 against 4.63 ms). Needs that commit's source and, for the GPU's build, Triton 3.6:

    git worktree add /tmp/wt22 787795b
    make check-sm90 TRITON=3.6.0      # (once: installs .triton-3.6.0)
    env -u TRITON_INTERPRET PYTHONPATH=/tmp/wt22/src:.triton-3.6.0 \
        .venv/bin/python benchmarks/stop22_spills.py
"""

import importlib.util
import os
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
import triton  # noqa: E402

from atenea.attention.backends.triton import check_sm90 as old  # 787795b's, by PYTHONPATH  # noqa: E402

_here = Path(__file__).resolve().parents[1] / "src/atenea/attention/backends/triton/sass.py"
_spec = importlib.util.spec_from_file_location("sass", _here)
sass = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass)

if __name__ == "__main__":
    old.VARIANTS["causal"] = dict(CAUSAL=True)
    kernel = old.attention_backward_kv
    signature = old._signature(kernel, "bf16")
    for rows in (64, 32):
        constants = old._constants(128, "bf16", "causal", dict(BLOCK_M=rows, BLOCK_N=64))
        source = old.ASTSource(fn=kernel, signature=signature, constexprs=constants,
                               attrs=old._alignment(kernel, signature))  # fmt: skip
        cubin = triton.compile(source, target=old.TARGET,
                               options={"num_warps": 4, "num_stages": 2}).asm["cubin"]  # fmt: skip
        bodies = sass.loops(sass.disassemble(cubin))
        registers, stack = sass.resources(cubin)
        print(f"Triton {triton.__version__} {rows}x64: {registers} registers, stack {stack}, "
              f"loops {[len(b) for b in bodies]}, spill ops {[sass.spill_ops(b) for b in bodies]}, "
              f"/pair {len(bodies[-1]) * 4 / (rows * 64):.3f}")  # fmt: skip
