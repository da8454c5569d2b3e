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
    printed = capsys.readouterr().out
    assert "| 1 | float32 | 4 |" in printed
    rows = json.loads(out.read_text())["results"]
    # the header names the bytes read, those of --quick's smaller matrices (it said 494 MB)
    assert f"matrices, {rows[0]['megabytes']:.0f} MB in float32" in printed
    assert rows[0]["megabytes"] < 494
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


# -- gpu_host_profile.py: its pieces that need no GPU -------------------------------------------


def test_gpu_host_profile_timeline_by_hand(monkeypatch):
    """Busy time is the kernels' union, gaps are grouped by the kernels around them, the API
    calls by name; all per call (here two)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_host_profile

    def kernel(name, ts, dur):
        return {"cat": "kernel", "name": name, "ts": ts, "dur": dur}

    events = [
        kernel("forward", 0, 10),
        kernel("delta", 30, 5),  # 20 us idle after the forward
        kernel("kv", 35, 20),  # starts as delta ends: no gap
        kernel("q", 50, 4),  # inside kv: adds nothing; kv still ends last
        {"cat": "gpu_memset", "name": "Memset", "ts": 60, "dur": 4},  # after kv: 5 us idle
        kernel("forward", 100, 10),  # 36 us idle after the fill
        {"cat": "cpu_op", "name": "aten::empty", "ts": 1, "dur": 99},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 1, "dur": 3},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 5, "dur": 3},
        {"cat": "cuda_driver", "name": "cuLaunchKernel", "ts": 9, "dur": 7},
        {"cat": "cuda_runtime", "name": "cudaEventRecord", "ts": 9},  # no duration: skipped
        {"cat": "cuda_runtime", "name": "cudaDeviceSynchronize", "ts": 20, "dur": 2},
        {"cat": "cuda_runtime", "name": "cudaDeviceSynchronize", "ts": 110, "dur": 50},  # drain
    ]
    summary = gpu_host_profile.timeline({"traceEvents": events}, calls=2)
    assert summary == {
        "device_ops_per_call": 3.0,
        "kernel_us": 24.5,  # (10 + 5 + 20 + 0 + 4 + 10) / 2
        "span_us": 55.0,  # (110 - 0) / 2
        "gaps": [
            ["Memset", "forward", 0.5, 18.0],
            ["forward", "delta", 0.5, 10.0],
            ["kv", "Memset", 0.5, 2.5],
        ],  # after q ends at 54 the gap counts from kv's 55
        "api": [
            ["cuLaunchKernel", 0.5, 3.5],
            ["cudaLaunchKernel", 1.0, 3.0],
            ["cudaDeviceSynchronize", 0.5, 1.0],
        ],  # the last one, traced's drain, left out
    }
    assert gpu_host_profile.timeline([], calls=1)["span_us"] == 0.0


def test_gpu_host_profile_times_launches_on_their_thread(monkeypatch):
    """Each pass and kernel launch is timed, the backward's under the thread that ran it (a
    CUDA backward runs on autograd's device thread: here a thread of our own); the timed
    kernels compute what the untimed ones do, and leave the module as it was."""
    import threading

    import torch

    import atenea
    from atenea import masks
    from atenea.attention.backends.triton import launch

    pytest.importorskip("triton")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_host_profile

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 80, 16, requires_grad=True) for _ in range(3))

    def gradients():
        out = atenea.attention(q, k, v, mask=masks.causal(), backend="triton")
        worker = threading.Thread(target=lambda: out.square().sum().backward())
        worker.start()
        worker.join()
        grads = [t.grad.clone() for t in (q, k, v)]
        q.grad = k.grad = v.grad = None
        return out.detach(), grads

    untimed = launch.run_backward, launch.attention_backward_kv
    expected = gradients()
    with gpu_host_profile.TimedCalls(launch) as timed:
        got = gradients()
    assert (launch.run_backward, launch.attention_backward_kv) == untimed
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], expected[1]))
    other = " (other thread)"
    assert set(timed.seconds) == {
        "run_forward", "attention_forward", "run_backward" + other,
        "attention_backward_delta" + other, "attention_backward_kv" + other,
        "attention_backward_q" + other,
    }  # fmt: skip
    kernels = sum(timed.seconds[f"attention_backward_{name}{other}"]
                  for name in ("delta", "kv", "q"))  # fmt: skip
    assert timed.seconds["run_backward" + other] >= kernels > 0  # launches inside their pass
    assert timed.seconds["run_forward"] >= timed.seconds["attention_forward"] > 0
    assert timed.per_call_us(2)["run_forward"] == round(timed.seconds["run_forward"] / 2 * 1e6, 1)
