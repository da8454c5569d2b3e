"""``x W^T + b`` on the CPU's fastest kernel for its shape.

Inference on the CPU is bound by the matrix products, and PyTorch's float32 ``F.linear`` goes
to MKL, which on AMD processors takes a slow generic path. ``python benchmarks/kernels.py`` on
the 2-core AMD EPYC this project is measured on: a matrix-vector product -- the whole of a
decode step -- reads GPT-2's weights at 13 GB/s through ``F.linear``, 16 through oneDNN (also
inside PyTorch, and already what bfloat16 uses), 25 through atenea's kernel, where a plain sum
reads 28 (one thread). ``linear`` picks:

- one row (a decode step), float32 or bfloat16, no gradient: atenea's own ``matvec``
  (``atenea._native``);
- 2 to 8 rows (beams, a small batch), float32, no gradient: ``matmul_rows``, which reads each
  weight once for all rows (same benchmark: 1.6x oneDNN at 2 rows, 1.2x at 8);
- more rows, float32, no gradient: oneDNN's linear, called directly;
- float32 with a gradient wanted: oneDNN for the forward product and for ``dx``, ``mm`` for ``dW``
  (``OneDNNLinear``; oneDNN's op has no backward of its own, and autograd would silently give
  no gradients through it);
- everything else: ``F.linear``: under CPU autocast (which casts through ``F.linear``), for
  other dtypes, and for tiny products (a oneDNN call cost about 12 us in a development
  measurement, more than a 64 x 64 product takes).

Inside ``torch.compile`` one float32 row still goes to ``matvec`` (as the operator
``atenea::matvec``); for the rest the compiler chooses its own kernels.

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


def _enabled() -> bool:
    return os.environ.get("ATENEA_LINEAR", "") != "aten"


# What this build of PyTorch has (the environment switch above is read at every call).
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _wants_gradient(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def route(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> str:
    """Which kernel ``linear(x, weight, bias)`` uses: ``"matvec"``, ``"rows"``, ``"onednn"``,
    ``"onednn+backward"`` or ``"aten"``."""
    if (
        not _enabled()
        or x.device.type != "cpu"
        or x.dim() < 2
        or x.dtype != weight.dtype
        or (bias is not None and bias.dtype != weight.dtype)
        or torch.is_autocast_enabled("cpu")  # autocast chooses the dtype through F.linear
    ):
        return "aten"
    rows = x.numel() // max(x.shape[-1], 1)
    if rows * weight.numel() < _MIN_WORK:
        return "aten"
    compiling = torch.compiler.is_compiling()  # the compiler chooses its own kernels, except...
    float32 = weight.dtype == torch.float32
    if _wants_gradient(x, weight, bias):
        return "onednn+backward" if ONEDNN and float32 and not compiling else "aten"
    native = weight.is_contiguous() and _native.unavailable() is None
    # ...for one float32 row: matvec (as the operator atenea::matvec). Compiled bfloat16 did
    # better on the compiler's prepacked oneDNN (GPT-2, compile=True, a development measurement:
    # 76-90 tokens/s against 66 with matvec; not a benchmark in the repository).
    if rows == 1 and native and (float32 or (weight.dtype == torch.bfloat16 and not compiling)):
        return "matvec"
    if compiling or not float32:
        return "aten"
    if rows <= _native.FEW_ROWS and native:
        return "rows"
    return "onednn" if ONEDNN else "aten"


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x (..., in)``, ``weight (out, in)``, ``bias (out,)`` -> ``(..., out)``, as ``F.linear``."""
    kernel = route(x, weight, bias)
    if kernel == "matvec":
        matvec = _native.matvec_op if torch.compiler.is_compiling() else _native.matvec
        return matvec(x, weight, bias).view(*x.shape[:-1], weight.shape[0])
    if kernel == "rows":
        out = _native.matmul_rows(x.reshape(-1, x.shape[-1]), weight, bias)
        return out.view(*x.shape[:-1], weight.shape[0])
    if kernel == "onednn":
        return _onednn(x, weight, bias)
    if kernel == "onednn+backward":
        return OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """``x W^T + b`` with its gradients, every product on oneDNN (float32, CPU):

        dx = dy W          (oneDNN's linear with the weight W^T)
        dW = dy^T x        (a plain ``mm``: it reads the transposes in place)
        db = sum of dy over the rows

    End to end: ``python benchmarks/training.py`` (the training step against Hugging Face's on
    MKL)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad_rows, weight.t()).view(x.shape)
        if ctx.needs_input_grad[1]:
            # A plain mm reads both operands transposed in place; oneDNN copied them first (the
            # ViT step of ``benchmarks/models.py --cases vit``: 0.94x -> 0.98x of HF, one thread).
            grad_weight = grad_rows.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same checkpoints) computed by ``linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
