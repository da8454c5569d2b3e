"""Compiles one small kernel for sm_90 twice, in the default register budget and held to 32
registers a thread, and prints what ``check_sm90.usage_of`` reads of each (a JSON list of
``Usage`` fields). Run without ``TRITON_INTERPRET`` (``test_triton_sass.py`` does)."""

import dataclasses
import json

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from atenea.attention.backends.triton.check_sm90 import usage_of


@triton.jit
def outer_products(X, Y, n, BLOCK: tl.constexpr):
    """Sums n outer products of BLOCK-vectors: BLOCK x BLOCK float32 values live across the
    loop, 32 a thread at BLOCK=32 over one warp."""
    offsets = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK, BLOCK], tl.float32)
    for i in range(0, n):
        x = tl.load(X + i * BLOCK + offsets)
        total += x[:, None] * x[None, :]
    tl.store(Y + offsets[:, None] * BLOCK + offsets[None, :], total)


def usage(**options) -> dict:
    source = ASTSource(
        fn=outer_products,
        signature={"X": "*fp32", "Y": "*fp32", "n": "i32", "BLOCK": "constexpr"},
        constexprs={"BLOCK": 32},
    )
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1, **options}
    )
    return dataclasses.asdict(usage_of(compiled))


if __name__ == "__main__":
    print(json.dumps([usage(), usage(maxnreg=32)]))
