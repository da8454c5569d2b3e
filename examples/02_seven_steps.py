"""Ideas 2 and 3 -- self-attention in seven steps: input, Q/K/V, scores (scaled), mask, softmax,
output, inspection. The same steps printed one by one: ``atenea steps`` (``--lang es``).

    python examples/02_seven_steps.py
"""

import math

import torch

import atenea
from atenea.inspect.lesson import random_lesson, seven_steps

# Step 1: the input X, one vector per token (random projections, as before any training).
lesson = random_lesson("El banco cerró temprano".split(), d_model=8, d_k=4, seed=0)
x = lesson.x  # (L, d_model) = (4, 8)

# Steps 2 to 6 written out, exactly as a course writes them.
q, k, v = x @ lesson.w_q, x @ lesson.w_k, x @ lesson.w_v  # step 2: (L, d_k) each
scores = q @ k.T / math.sqrt(q.shape[-1])  # step 3: (L, L), scaled
# step 4: no mask here (see 03_masks.py)
weights = torch.softmax(scores, dim=-1)  # step 5: every row sums to 1
y = weights @ v  # step 6: (L, d_k)

# The library's literal steps and its fast path agree with the hand computation.
steps = seven_steps(lesson)
assert torch.allclose(steps["weights"], weights, atol=1e-6)
fast = atenea.attention(q[None, None], k[None, None], v[None, None])[0, 0]
assert torch.allclose(fast, y, atol=1e-5)

# Step 7: inspect the weights.
for word, row in zip(lesson.tokens, weights):
    best = int(row.argmax())
    print(f"{word:<9} looks most at {lesson.tokens[best]!r} ({row[best]:.2f})")
