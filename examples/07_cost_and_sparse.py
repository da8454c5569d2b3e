"""Idea 8 -- the cost of the L x L matrix, and a sparse cure.

The literal steps keep an L x L matrix: twice the length, four times the memory. A sliding
window lets each query see only its last W keys: memory and work grow like L. The full
measurement with a plot: ``atenea cost``.

    python examples/07_cost_and_sparse.py
"""

import torch

import atenea
from atenea import masks
from atenea.inspect.cost import run_cost

result = run_cost([128, 256, 512], window=32, repeats=1)
for path, (_, memory_exp) in result.exponents.items():
    print(f"{path:<8} memory ~ L^{memory_exp:.2f}")

# A sliding window is an ordinary mask: the tiled backend skips the tiles it empties and
# gives the same numbers as dense attention with the mask written out in full.
torch.manual_seed(0)
length, window = 512, 32
q, k, v = (torch.randn(1, 2, length, 16) for _ in range(3))
sparse = atenea.attention(q, k, v, mask=masks.sliding_window(window), backend="blocks")
table = masks.sliding_window(window).materialize(length, length)
dense = atenea.attention(q, k, v, mask=masks.dense(table), backend="reference")
assert torch.allclose(sparse, dense, atol=1e-5)
kept = table.sum().item() / length**2
print(f"window {window}: each query keeps {window} of {length} keys ({kept:.1%} of the matrix)")
