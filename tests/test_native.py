"""``atenea._native``: the C kernels are built once per machine into the cache folder, reused by
later processes, and everything falls back to PyTorch's kernels when no compiler works."""

import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch

from atenea import _native

PROBE = """
import json, torch
from atenea import _native
from atenea.nn.linear import route
reason = _native.unavailable()
x, w = torch.randn(1, 1024), torch.randn(1024, 1024)
print(json.dumps({"reason": reason, "route": route(x, w),
                  "files": sorted(p.name for p in _native.cache_dir().glob("*"))}))
"""


def probe(tmp_path, **env):
    environment = {**os.environ, "ATENEA_CACHE": str(tmp_path), **env}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=environment, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_native.unavailable() is not None, reason="no working C compiler here")
def test_built_once_then_reused(tmp_path):
    first = probe(tmp_path)
    assert first["reason"] is None and first["route"] == "matvec"
    [library] = first["files"]
    assert library.startswith("matvec-") and library.endswith(".so")
    built = (tmp_path / "kernels" / library).stat().st_mtime_ns
    assert probe(tmp_path)["files"] == [library]  # no second build, no leftover temporary file
    assert (tmp_path / "kernels" / library).stat().st_mtime_ns == built


def test_without_a_compiler_pytorch_s_kernels_are_used(tmp_path):
    result = probe(tmp_path, CC=str(tmp_path / "no-such-compiler"))
    assert result["reason"] and "no-such-compiler" in result["reason"]
    assert result["route"] in ("onednn", "aten") and result["files"] == []


def test_turned_off_by_the_environment(tmp_path):
    result = probe(tmp_path, ATENEA_NATIVE="0")
    assert result["reason"] == "turned off by ATENEA_NATIVE=0" and result["route"] != "matvec"


@pytest.mark.skipif(_native.unavailable() is not None, reason="no working C compiler here")
def test_matvec_operator_for_torch_compile_passes_pytorch_s_checks():
    weight, x, bias = torch.randn(40, 33), torch.randn(33), torch.randn(40)
    torch.library.opcheck(_native.matvec_op, (x, weight, bias))
    assert torch.allclose(_native.matvec_op(x, weight, None), weight @ x, atol=1e-5)


@pytest.mark.skipif(_native.unavailable() is not None, reason="no working C compiler here")
def test_matvec_rejects_what_it_cannot_compute():
    with pytest.raises(ValueError, match="33 columns"):
        _native.matvec(torch.randn(32), torch.randn(4, 33))
    with pytest.raises(ValueError, match="contiguous float32 or bfloat16"):
        _native.matvec(torch.randn(4), torch.randn(4, 3).T)
    with pytest.raises(ValueError, match="contiguous float32 or bfloat16"):
        _native.matvec(torch.randn(3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x \(1..8, 3\)"):
        _native.matmul_rows(torch.randn(9, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="contiguous float32"):
        _native.matmul_rows(torch.randn(2, 3).bfloat16(), torch.randn(4, 3).bfloat16())


PORTABLE = [["-O3"], ["-O3", "-march=x86-64-v3"]]  # baseline SSE2, and AVX2 (no AVX-512)


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not shutil.which("cc"), reason="x86-64 builds with cc"
)
@pytest.mark.parametrize("flags", PORTABLE, ids=["baseline", "avx2"])
def test_builds_for_other_processors_compute_the_same(tmp_path, flags):
    # The machine's own build takes the AVX-512 (and AVX512-BF16) paths; other processors get
    # the generic vector code, with 4-row blocks: checked here against float64 as well.
    library_path = tmp_path / "matvec.so"
    command = ["cc", *flags, "-fopenmp", "-shared", "-fPIC", str(_native.SOURCE), "-o"]
    subprocess.run([*command, str(library_path)], check=True, capture_output=True)
    library = ctypes.CDLL(str(library_path))
    pointer, size = ctypes.c_void_p, ctypes.c_long
    for function in (library.atenea_matvec_f32, library.atenea_matvec_bf16):
        function.argtypes = [pointer, pointer, pointer, pointer, size, size, ctypes.c_int]
    library.atenea_matmul_rows_f32.argtypes = [pointer] * 4 + [size] * 3 + [ctypes.c_int]
    for rows, columns in [(1, 1), (7, 5), (17, 33), (100, 1000)]:
        for dtype, function in ((torch.float32, library.atenea_matvec_f32),
                                (torch.bfloat16, library.atenea_matvec_bf16)):  # fmt: skip
            weight, x = torch.randn(rows, columns, dtype=dtype), torch.randn(columns, dtype=dtype)
            bias, out = torch.randn(rows), torch.empty(rows)
            function(weight.data_ptr(), x.data_ptr(), bias.data_ptr(), out.data_ptr(),
                     rows, columns, 2)  # fmt: skip
            exact = weight.double() @ x.double() + bias.double()
            scale = (weight.double().abs() @ x.double().abs()).max()
            assert (out.double() - exact).abs().max() / scale < 1e-6
        for batch in (1, 3, 8):  # a few rows at once
            weight, x = torch.randn(rows, columns), torch.randn(batch, columns)
            bias, out = torch.randn(rows), torch.empty(batch, rows)
            library.atenea_matmul_rows_f32(weight.data_ptr(), x.data_ptr(), bias.data_ptr(),
                                           out.data_ptr(), batch, rows, columns, 2)  # fmt: skip
            exact = x.double() @ weight.double().T + bias.double()
            scale = (x.double().abs() @ weight.double().abs().T).max()
            assert (out.double() - exact).abs().max() / scale < 1e-6
