"""``x W^T + b`` on the CPU's fastest kernel for its shape.

Inference on the CPU is bound by the matrix products, and PyTorch's float32 ``F.linear`` goes
to MKL, which on AMD processors takes a slow generic path: on the 2-core AMD EPYC this project
is measured on it multiplies at 90 GF/s where oneDNN (also inside PyTorch, and already what
bfloat16 uses) reaches 200 GF/s, and reads weights at 15-17 GB/s in a matrix-vector product --
the whole of a decode step -- where a plain sum reads 37. ``linear`` picks:

- one row (a decode step), float32 or bfloat16: atenea's own ``matvec`` (``atenea._native``),
  which reads the weights at about 85% of a plain sum's speed;
- more rows, float32: oneDNN's linear, called directly;
- everything else: ``F.linear``, and in particular whenever a gradient is wanted (neither
  kernel has a backward: autograd would silently give no gradients), under CPU autocast (which
  casts through ``F.linear``), and for tiny products (a oneDNN call costs about 12 us, more
  than a 64 x 64 product takes).

Inside ``torch.compile`` one row still goes to ``matvec`` (as the operator ``atenea::matvec``);
for more rows the compiler chooses its own kernels.

``ATENEA_LINEAR=aten`` in the environment sends everything to ``F.linear`` (for comparisons).
Results differ from ``F.linear`` only by summation order (about 1e-7 relative in float32).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea import _native

# The fast routes only pay when the product has at least this many multiply-adds
# (rows x out x in): a 512 x 512 matrix against one row already does.
_MIN_WORK = 2**18

ROUTES = ("matvec", "onednn", "aten")


def _enabled() -> bool:
    return os.environ.get("ATENEA_LINEAR", "") != "aten"


ONEDNN = (
    _enabled()
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


def _wants_gradient(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def route(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> str:
    """Which kernel ``linear(x, weight, bias)`` uses: ``"matvec"``, ``"onednn"`` or ``"aten"``."""
    if (
        not _enabled()
        or x.device.type != "cpu"
        or x.dim() < 2
        or x.dtype != weight.dtype
        or (bias is not None and bias.dtype != weight.dtype)
        or _wants_gradient(x, weight, bias)
        or torch.is_autocast_enabled("cpu")  # autocast chooses the dtype through F.linear
    ):
        return "aten"
    rows = x.numel() // max(x.shape[-1], 1)
    if rows * weight.numel() < _MIN_WORK:
        return "aten"
    if (
        rows == 1
        and weight.dtype in _native.MATVEC_DTYPES
        and weight.is_contiguous()
        and _native.unavailable() is None
    ):
        return "matvec"
    if ONEDNN and weight.dtype == torch.float32 and not torch.compiler.is_compiling():
        return "onednn"
    return "aten"


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x (..., in)``, ``weight (out, in)``, ``bias (out,)`` -> ``(..., out)``, as ``F.linear``."""
    kernel = route(x, weight, bias)
    if kernel == "matvec":
        matvec = _native.matvec_op if torch.compiler.is_compiling() else _native.matvec
        return matvec(x, weight, bias).view(*x.shape[:-1], weight.shape[0])
    if kernel == "onednn":
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same checkpoints) computed by ``linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
