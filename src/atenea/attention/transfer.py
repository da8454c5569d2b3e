"""Copies from the host to the device that the host does not wait for.

A blocking copy to a GPU (``tensor.to("cuda")``) waits for all the work queued before it:
PyTorch synchronizes the stream after the copy. A ``non_blocking`` one from ordinary
(pageable) memory may wait too (CUDA may stage it through the stream). From pinned memory the
copy is queued like a kernel; the pinned block stays reserved until the copy has run (PyTorch's
host allocator records it), so the source can be dropped, or changed, at once: the copy reads a
pinned duplicate made here (``pin_memory`` of a tensor already pinned would return the tensor
itself, so a pinned source is duplicated too).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

# ATen ops after which the host waits for a GPU: a value read back, or a result whose size
# depends on the values (``nonzero``; ``t[mask] = x`` is an ``index_put_`` through it)
WAITING_OPS = frozenset({
    "aten._local_scalar_dense.default", "aten.item.default", "aten.nonzero.default",
    "aten.index_put_.default", "aten.masked_select.default", "aten.index.Tensor",
})  # fmt: skip


def to_device(
    tensor: Tensor, device: torch.device | str, dtype: torch.dtype | None = None
) -> Tensor:
    """``tensor`` on ``device`` (in ``dtype``, if given), a copy from the host to a GPU queued
    without the host waiting; any other move is ``Tensor.to``'s (the tensor itself when it is
    there already)."""
    device = torch.device(device)
    if dtype is not None:
        tensor = tensor.to(dtype)  # on the host, before the copy: fewer bytes to pin and send
    if tensor.device.type != "cpu" or device.type != "cuda" or _capturing():
        return tensor.to(device)
    # contiguous first: an expanded tensor (stride 0) cannot be pinned as it is, and a strided
    # one would reach the GPU through an unpinned temporary, waiting after all
    staged = tensor.contiguous()
    staged = staged.clone() if staged.is_pinned() else staged
    return staged.pin_memory().to(device, non_blocking=True)


class OpRecorder(TorchDispatchMode):
    """``with OpRecorder() as ops:``: the name of every ATen op run inside (``ops.names``),
    and ``ops.waits()``, those of them after which the host would wait for a GPU
    (``WAITING_OPS``). Recorded on the CPU, where every op runs: how a test or a benchmark sees
    what a piece of code would make the host do on a device."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))

    def waits(self) -> set[str]:
        return self.names & WAITING_OPS


def _capturing() -> bool:
    """Inside ``torch.compile`` or a CUDA graph capture: a copy from a temporary pinned block
    would be recorded and replayed after the block is reused, so ``Tensor.to`` there."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
