"""The issue's three masks at a length (causal, a window of 1024, 8 documents), for atenea and
for FlexAttention, with the pairs each keeps (for TFLOP/s): one definition that ``gpu.py``'s
table, the backward sweep and ``triton_tuning``'s checks all time."""

from __future__ import annotations

import torch

from atenea import masks

WINDOW, DOCUMENTS = 1024, 8


def mask_of(name: str, length: int, device: str = "cuda"):
    """(atenea mask, FlexAttention mask_mod, pairs kept)."""
    if name == "causal":
        return masks.causal(), lambda b, h, q, k: q >= k, length * (length + 1) // 2
    if name == "window":
        pairs = sum(min(i + 1, WINDOW) for i in range(length))
        return (masks.sliding_window(WINDOW),
                lambda b, h, q, k: (q >= k) & (q - k < WINDOW), pairs)  # fmt: skip
    ids = (torch.arange(length, device=device) * DOCUMENTS) // length
    size = length // DOCUMENTS
    return (masks.document(ids) & masks.causal(),
            lambda b, h, q, k: (ids[q] == ids[k]) & (q >= k),
            DOCUMENTS * size * (size + 1) // 2)  # fmt: skip
