"""``check_sm90`` on the dK/dV pass as it would be if the GPU sweep crowned the tiles queries
down (stop 29): every configuration with ``kv_direct``, and the light calls (``configs.is_light``)
on 128x64 blocks, 8 warps (``LIGHT_KV``'s candidate, the first dK/dV block without spills under
Triton 3.6). Prints check_sm90's table and verdict; exits 1 where a build fails.

    env -u TRITON_INTERPRET [PYTHONPATH=.triton-3.6.0] .venv/bin/python \\
        benchmarks/check_kv_direct.py [--dims 128] [--jobs 2]

``--tma`` (stop 30): the light calls with one query head a step also read Q and dO through TMA
descriptors (``kv_tma``; packed heads keep the pointers: with TMA their loops spilled 17-20
stack ops a step under Triton 3.6, ``triton_sass.py --pack 4 --tma``).

Any further argument goes to ``check_sm90`` (which already compiles only the dK/dV pass here).
Nothing is changed outside this process: the tables are patched before its workers fork.
"""

import os
import sys
from dataclasses import replace

os.environ.pop("TRITON_INTERPRET", None)  # the interpreter compiles nothing
import triton_sass  # noqa: E402  (beside this script: its configs patch, reused)
from atenea.attention.backends.triton import check_sm90  # noqa: E402

LIGHT_CANDIDATE = dict(block_m1=128, kv_warps=8)  # with the table's 64 keys a block


def main(argv: list[str]) -> int:
    tuning = check_sm90.tuning
    tuning.LIGHT_KV[256] = LIGHT_CANDIDATE
    triton_sass.launch_every_row(None, direct=True)  # every dK/dV build queries down
    if "--tma" in argv:
        argv = [arg for arg in argv if arg != "--tma"]
        directed = tuning.configs_for

        def configs_for(head_dim, value_dim, dtype, switches=frozenset(), group=1, pack=1,
                        tile=128):  # fmt: skip
            forward, backward = directed(head_dim, value_dim, dtype, switches, group, pack, tile)
            key = tuning.row_bytes(head_dim, value_dim, dtype)
            light = tuning.takes_light_kv(key, switches, group, pack) and pack == 1
            return forward, replace(backward, kv_tma=light)

        tuning.configs_for = configs_for
    return check_sm90.main(["--kernels", "dK/dV", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
