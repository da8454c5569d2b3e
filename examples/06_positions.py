"""Idea 7 -- positions: attention alone does not see order. Permute the tokens and the outputs
are only permuted. Add positions (a sinusoidal or learned table, X0 = E + P; or RoPE, which
turns q and k) and the order changes the result.

    python examples/06_positions.py        (printed: atenea steps --positions rope --permute)
"""

import torch

from atenea.inspect.lesson import permutation_check, random_lesson
from atenea.nn.positions import RotaryEmbedding

words = "El perro muerde al hombre".split()
reverse = list(reversed(range(len(words))))
for kind in ("none", "sinusoidal", "learned", "rope"):
    check = permutation_check(random_lesson(words, positions=kind), reverse)
    verdict = "only moved" if check["equivariance"] < 1e-5 else "changed"
    print(f"positions {kind:<10}: outputs {verdict} (difference {check['equivariance']:.1e})")

# RoPE makes q . k depend on the distance between positions, not on where they are.
rope = RotaryEmbedding(8)
torch.manual_seed(0)
q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)


def score(query_at: int, key_at: int) -> float:
    turned_q = rope(q, torch.tensor([query_at]))
    turned_k = rope(k, torch.tensor([key_at]))
    return float((turned_q * turned_k).sum())


print(f"score(5, 2) = {score(5, 2):.4f}, score(13, 10) = {score(13, 10):.4f}: same distance")
assert abs(score(5, 2) - score(13, 10)) < 1e-4
