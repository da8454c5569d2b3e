"""Smoke runs of the benchmark scripts (tiny sizes, one repetition): they run, print their
table and write valid JSON. Speed is never asserted here."""

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_training_benchmark_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import training

    out = tmp_path / "training.json"
    assert training.main(["--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| fp32 |" in table and "| bf16 autocast |" in table and "MISMATCH" not in table
    result = json.loads(out.read_text())["training"]
    assert result["fp32_max_loss_diff"] < 1e-3 and result["packing_max_logit_diff"] < 1e-3
    assert all(4 <= count <= 8 for count in result["documents_per_row"])
    assert len(result["samples"]["atenea_packed"]) == 1


def test_kernels_benchmark_quick(tmp_path, monkeypatch, capsys):
    from atenea import _native

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import kernels

    out = tmp_path / "kernels.json"
    expected = 0 if _native.unavailable() is None else 1
    assert kernels.main(["--quick", "--json", str(out)]) == expected
    if expected:
        return
    assert "| 1 | float32 | 4 |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["results"]
    assert [(r["dtype"], r["rows"]) for r in rows] == [("float32", 1), ("float32", 4),
                                                        ("bfloat16", 1)]  # fmt: skip
    assert all(rate > 0 for r in rows for rate in r["gb_per_s"].values() if rate is not None)
    # every contender runs everywhere but oneDNN in bfloat16, which needs AVX-512 (n/a)
    assert all(r["gb_per_s"][name] for r in rows for name in ("F.linear", "atenea", "sum"))


@pytest.mark.gpu
def test_gpu_benchmark_quick(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--quick", "--json",
                           str(out)], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["attention"] and result["decode"] and result["training"]
    assert not [r for r in result["attention"] if "error" in r and "triton" not in r["impl"]]


@pytest.mark.slow
def test_long_context_benchmark_quick(tmp_path, monkeypatch, capsys):
    """Minutes on a loaded 2-core machine: trains two LMs and embeds a few articles."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import long_context
    from atenea.training.datasets import pydocs, wikipedia

    if wikipedia.data_folder() is None or not pydocs.ROOT.is_dir():
        pytest.skip(f"needs the corpora: {wikipedia.INSTALL}; {pydocs.INSTALL}")
    out = tmp_path / "long_context.json"
    assert long_context.main(["--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 64 | memory 64 |" in table and "recall@5" in table and "kNN-LM" in table
    result = json.loads(out.read_text())
    assert len(result["memory"]) == 5 and 0 <= result["retrieval"]["recall@5"] <= 1
    assert result["rag"]["tokens"] > 0 and "In-context retrieval" in table
    assert result["rag"]["joined"]["tokens"] == result["rag"]["tokens"]  # the same tokens scored
