"""Idea 1 -- attention is a weighted mixture.

Each position t gets a new vector: a mixture of the value vectors of every position j, with
weights alpha(t, j) that are non-negative and add up to 1. The weights come from how similar
t is to each j. Here the vectors are made by hand, so every number can be checked in your head.

    python examples/01_weighted_mixture.py
"""

import torch

import atenea

words = ["El", "banco", "cerró", "temprano"]
# Two made-up features per word: (is about money, is an action).
vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.8, 1.0], [0.0, 0.6]])

# Similarity of "banco" (t = 1) with every word: a dot product.
similarity = vectors @ vectors[1]  # (4,)
alpha = torch.softmax(similarity, dim=0)  # non-negative, sums to 1
context = (alpha[:, None] * vectors).sum(0)  # sum_j alpha(t, j) * value(j)

for word, weight in zip(words, alpha.tolist()):
    print(f"alpha(banco, {word:<8}) = {weight:.3f}")
print(f"sum of the weights = {alpha.sum():.3f}")
print(f"context(banco) = {context.tolist()}  (pulled towards 'cerró', the other money word)")

# The same mixture for every position at once is atenea.attention with q = k = v = vectors
# and no 1/sqrt(d) scaling (scale=1.0), in the layout (batch, heads, length, dim).
x = vectors[None, None]
every = atenea.attention(x, x, x, scale=1.0)[0, 0]
assert torch.allclose(every[1], context, atol=1e-6)
print("atenea.attention gives the same context for 'banco'")
