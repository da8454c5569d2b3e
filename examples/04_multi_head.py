"""Idea 5 -- multi-head attention: d_model is split into h heads, each with its own W_Q^i,
W_K^i, W_V^i; the heads run side by side, their outputs are concatenated and mixed by W_O.

    python examples/04_multi_head.py       (printed: atenea steps --heads 2)
"""

import torch

from atenea.inspect.lesson import module_output, random_lesson, split_heads

# d_model = 12 split into 3 heads of d_k = 4.
lesson = random_lesson("El banco cerró temprano".split(), d_model=12, d_k=4, num_heads=3)
parts = split_heads(lesson)
print("weights of each head:", tuple(parts["weights"].shape))  # (3, L, L)
print("concatenation:", tuple(parts["concat"].shape), "-> output:", tuple(parts["output"].shape))

# Each head looks somewhere else: its most-attended token per query.
for head, weights in enumerate(parts["weights"]):
    print(f"head {head}:", [lesson.tokens[int(j)] for j in weights.argmax(-1)])

# atenea.nn.MultiHeadAttention with the same matrices gives the same output.
reference = module_output(lesson)
assert torch.allclose(parts["output"], reference, atol=1e-5)
print("equal to atenea.nn.MultiHeadAttention:", (parts["output"] - reference).abs().max().item())
