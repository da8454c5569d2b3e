"""atenea's own CPU kernels: small C files compiled on first use, called through ctypes.

One C file, ``matvec.c``: the products of a decode step, ``matvec`` (one row) and
``matmul_rows`` (2 to 8). ``python benchmarks/kernels.py`` measures them against ``F.linear``
(MKL), oneDNN and a plain sum; on the 2-core EPYC, one row of float32 reads GPT-2's weights at
88% of the sum's speed, where MKL reaches 45% and oneDNN 58%.

The C file is compiled by the machine's C compiler (``$CC``, else ``cc``) for this processor
(``-march=native``) into ``~/.cache/atenea/kernels`` (``$ATENEA_CACHE`` or ``$XDG_CACHE_HOME``
move it), once per source, flags and processor; later processes load the file built. Without a
compiler, or with ``ATENEA_NATIVE=0``, nothing is built and the callers use PyTorch's kernels:
``unavailable()`` says why. This package imports nothing from atenea, so every layer may use it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("matvec.c")
# The first that builds wins: OpenMP (the libgomp PyTorch has loaded, so its thread pool), for
# this processor; compilers without OpenMP or -march=native fall back to the later sets.
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-march=native"], ["-O3"])
# Below this many weights a product is not shared between threads (waking one costs more).
_PARALLEL_MIN = 2**20

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_why_not: str | None = None
_loaded = False


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("ATENEA_CACHE"):
        return Path(os.environ["ATENEA_CACHE"]) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atenea" / "kernels"


def _processor() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags (Linux), else the
    platform's own description."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(wanted))  # the first core's lines (all cores alike)
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _build(compiler: str) -> Path:
    """Compile ``SOURCE`` (or reuse the file built before) and return the shared library."""
    source = SOURCE.read_bytes()
    folder = cache_dir()
    last_error = ""
    for flags in FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join([source, " ".join(flags).encode(), _processor().encode(), compiler.encode()])
        ).hexdigest()[:16]
        target = folder / f"matvec-{key}.so"
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        # Build under a temporary name and rename: processes starting together (DDP, test
        # workers) never load a half-written file.
        handle, partial = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(handle)
        command = [compiler, *flags, "-shared", "-fPIC", str(SOURCE), "-o", partial]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(partial, target)
                return target
            last_error = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            last_error = last_error[0]
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise RuntimeError(f"{compiler} could not build {SOURCE.name}: {last_error}")


def _load() -> None:
    global _library, _why_not, _loaded
    if _loaded:  # the common case, without the lock (and traceable by torch.compile)
        return
    with _lock:
        if _loaded:
            return
        _loaded = True
        if os.environ.get("ATENEA_NATIVE", "1") == "0":
            _why_not = "turned off by ATENEA_NATIVE=0"
            return
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not compiler:
            _why_not = "no C compiler found (set CC)"
            return
        try:
            library = ctypes.CDLL(str(_build(compiler)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            _why_not = str(error)
            return
        # (W, x, bias, out, sizes..., threads): two sizes (m, n), or three (B, m, n).
        pointers, size = [ctypes.c_void_p] * 4, ctypes.c_long
        for name, sizes in (("atenea_matvec_f32", 2), ("atenea_matvec_bf16", 2),
                            ("atenea_matmul_rows_f32", 3)):  # fmt: skip
            function = getattr(library, name)
            function.argtypes = [*pointers, *[size] * sizes, ctypes.c_int]
            function.restype = None
        _library = library


def unavailable() -> str | None:
    """None when the kernels are built and loaded, else the reason they are not."""
    _load()
    return _why_not


MATVEC_DTYPES = (torch.float32, torch.bfloat16)
FEW_ROWS = 8  # matmul_rows is for up to this many rows (beyond, oneDNN's blocking wins)


def _checked_library(name: str, weight: Tensor, dtypes) -> ctypes.CDLL:
    if _library is None:
        raise RuntimeError(f"atenea's native kernels are not available: {unavailable()}")
    if weight.dtype not in dtypes or not weight.is_contiguous() or weight.is_cuda:
        kinds = " or ".join(str(d).split(".")[-1] for d in dtypes)
        raise ValueError(f"{name}: expected a contiguous {kinds} CPU weight")
    return _library


def _call(function, weight: Tensor, x: Tensor, bias: Tensor | None, out: Tensor, *sizes):
    """``function(W, x, bias (float32 or NULL), out, *sizes, threads)``: the kernels' common
    calling convention; threads only for a matrix large enough to share."""
    bias = None if bias is None else bias.float().contiguous()
    threads = torch.get_num_threads() if weight.numel() >= _PARALLEL_MIN else 1
    function(
        weight.data_ptr(), x.data_ptr(), None if bias is None else bias.data_ptr(),
        out.data_ptr(), *sizes, threads,
    )  # fmt: skip
    return out


def matvec(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``weight @ x + bias`` for one vector on the CPU: ``x (n,)``, ``weight (m, n)`` contiguous,
    float32 or bfloat16 (``x`` is taken in that dtype) -> ``(m,)`` in that dtype,
    accumulated in float32, on ``torch.get_num_threads()`` threads when the matrix is large.
    Callers check ``unavailable()`` first."""
    library = _checked_library("matvec", weight, MATVEC_DTYPES)
    rows, columns = weight.shape
    if x.numel() != columns:
        raise ValueError(f"matvec: x has {x.numel()} values for a weight of {columns} columns")
    # x in the weight's dtype (the bfloat16 kernel multiplies bfloat16 pairs); the bias in float32.
    x = x.reshape(columns).to(weight.dtype).contiguous()
    out = torch.empty(rows, dtype=torch.float32)
    if weight.dtype == torch.float32:
        return _call(library.atenea_matvec_f32, weight, x, bias, out, rows, columns)
    return _call(library.atenea_matvec_bf16, weight, x, bias, out, rows, columns).to(weight.dtype)


def matmul_rows(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for a few float32 rows: ``x (B, n)`` with ``B <= FEW_ROWS``,
    ``weight (m, n)`` contiguous -> ``(B, m)``. The weight is read from memory once for all rows.
    Callers check ``unavailable()`` first."""
    library = _checked_library("matmul_rows", weight, (torch.float32,))
    rows, columns = weight.shape
    if x.dim() != 2 or x.shape[1] != columns or not 1 <= x.shape[0] <= FEW_ROWS:
        raise ValueError(
            f"matmul_rows: expected x (1..{FEW_ROWS}, {columns}), got {tuple(x.shape)}"
        )
    x = x.float().contiguous()
    out = torch.empty(x.shape[0], rows, dtype=torch.float32)
    return _call(library.atenea_matmul_rows_f32, weight, x, bias, out, x.shape[0], rows, columns)


# ``matvec`` as a PyTorch operator, so that ``torch.compile`` calls it from its graph (a plain
# ctypes call would break the graph). Registered the low-level way, which cost less per call
# in a compiled graph than ``torch.library.custom_op`` (9 against 15 us in a development
# measurement; a GPT-2 decode step makes 49 calls). Eager callers use ``matvec`` itself.
_library_def = torch.library.Library("atenea", "DEF")
_library_def.define("matvec(Tensor x, Tensor weight, Tensor? bias) -> Tensor")
_library_def.impl("matvec", lambda x, weight, bias: matvec(x, weight, bias), "CPU")


@torch.library.register_fake("atenea::matvec")
def _(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return weight.new_empty(weight.shape[0])


matvec_op = torch.ops.atenea.matvec.default
