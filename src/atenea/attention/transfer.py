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


def to_device(
    tensor: Tensor, device: torch.device | str, dtype: torch.dtype | None = None
) -> Tensor:
    """``tensor`` on ``device`` (in ``dtype``, if given), a copy from the host to a GPU queued
    without the host waiting; any other move is ``Tensor.to``'s (the tensor itself when it is
    there already)."""
    device = torch.device(device)
    if dtype is not None:
        tensor = tensor.to(dtype)  # on the host, before the copy: fewer bytes to pin and send
    # inside torch.compile the graph makes its own copies (Tensor.to, as before)
    if tensor.device.type != "cpu" or device.type != "cuda" or torch.compiler.is_compiling():
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
