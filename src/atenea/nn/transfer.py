"""Copies from the host to the device that the host does not wait for.

A blocking copy to a GPU (``tensor.to("cuda")``) waits for all the work queued before it:
PyTorch synchronizes the stream after the copy. A ``non_blocking`` one from ordinary
(pageable) memory may wait too (CUDA may stage it through the stream). From pinned memory the
copy is queued like a kernel; the pinned block stays reserved until the copy has run (PyTorch's
host allocator records it), so the source can be dropped at once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_device(host: Tensor, device: torch.device | str) -> Tensor:
    """``host`` (a CPU tensor) on ``device``, queued without the host waiting; the tensor itself
    when ``device`` is the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
