"""``check_sm90`` on the dK/dV pass as it would be if the GPU sweep crowned the tiles queries
down (stop 29): every configuration with ``kv_direct``, and the light calls (``configs.is_light``)
on 128x64 blocks, 8 warps (``LIGHT_KV``'s candidate, the first dK/dV block without spills under
Triton 3.6). Prints check_sm90's table and verdict; exits 1 where a build fails.

    env -u TRITON_INTERPRET [PYTHONPATH=.triton-3.6.0] .venv/bin/python \\
        benchmarks/check_kv_direct.py [--dims 128] [--jobs 2]

Any further argument goes to ``check_sm90`` (which already compiles only the dK/dV pass here).
Nothing is changed outside this process: the tables are patched before its workers fork.
"""

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)  # the interpreter compiles nothing
import triton_sass  # noqa: E402  (beside this script: its configs patch, reused)
from atenea.attention.backends.triton import check_sm90  # noqa: E402

LIGHT_CANDIDATE = dict(block_m1=128, kv_warps=8)  # with the table's 64 keys a block


def main(argv: list[str]) -> int:
    check_sm90.tuning.LIGHT_KV[256] = LIGHT_CANDIDATE
    triton_sass.launch_every_row(None, direct=True)  # every dK/dV build queries down
    return check_sm90.main(["--kernels", "dK/dV", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
