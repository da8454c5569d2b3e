"""Idea 4 -- masks: which pairs (query, key) may attend.

- causal: a token sees itself and the tokens before it (text generation);
- padding: in a batch of sentences of different lengths, the filler positions are ignored.

    python examples/03_masks.py
"""

import torch

import atenea
from atenea import masks

words = "El gato persigue al ratón".split()
torch.manual_seed(0)
q, k, v = (torch.randn(1, 1, len(words), 8) for _ in range(3))

# Causal: "persigue" (position 2) may look at "El", "gato" and itself, never at "ratón".
_, weights = atenea.attention(q, k, v, mask=masks.causal(), return_weights=True)
row = weights[0, 0, 2]
print("persigue ->", ", ".join(f"{w} {p:.2f}" for w, p in zip(words, row.tolist())))
assert row[3:].sum() == 0

# Padding: two sentences in one batch, the second only 3 tokens long (2 filler positions).
q2, k2, v2 = (torch.randn(2, 1, 5, 8) for _ in range(3))
padding = masks.key_padding([5, 3])  # real lengths per row of the batch
_, weights = atenea.attention(q2, k2, v2, mask=padding, return_weights=True)
print("second sentence, weights on its filler keys:", weights[1, 0, :, 3:].abs().max().item())
assert weights[1, 0, :, 3:].abs().max() == 0

# Masks combine: causal and padding together, as a decoder sees a padded batch.
both = masks.causal() & padding
print(both.materialize(5, 5)[1, 0].int())  # (B, H, Lq, Lk) -> the second sentence's table
