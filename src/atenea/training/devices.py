"""Where a command runs and in which precision: ``--device`` and ``--precision``.

``auto`` means the GPU when there is one (``cuda``, i.e. ``cuda:0``), else the CPU; a device
that is not there is an error that says what there is. ``auto`` precision is bfloat16 autocast
on a GPU (parameters and optimizer stay float32; the tensor cores run at 4-16x fp32) and
float32 on the CPU, where bf16 matmuls are slower than fp32 on most processors.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "bf16", "fp32")


def _present() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "this machine has no CUDA GPU (PyTorch sees none)"
    return f"this machine has {count} CUDA GPU{'s' if count > 1 else ''}: cuda:0..cuda:{count - 1}"


def resolve_device(spec: str | None = "auto") -> torch.device:
    """The device ``spec`` names: ``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``.
    Raises ValueError (``device: ...``) for a device that is not there or not a device."""
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"device: expected {DEVICE_CHOICES}, got {spec!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device: expected {DEVICE_CHOICES}, got {spec!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device: {spec} asked for, but {_present()}; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device: {spec} asked for, but {_present()}")
    return device


def uses_bf16(precision: str | None, device: torch.device) -> bool:
    """Whether to autocast to bfloat16: ``auto`` on a GPU, ``bf16`` always, ``fp32`` never."""
    precision = precision or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"
