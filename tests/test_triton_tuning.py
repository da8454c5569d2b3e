"""The GPU sweep's choosing and applying of the Triton backward's blocks
(``benchmarks/triton_tuning.py``): the winner from hand-made timings, the winners file between
the sweep and ``gpu.py``, and a tuning reaching the kernels' launches with the results still
right (interpreter runs on CPU tensors). Times are never measured here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import triton_tuning  # noqa: E402
from atenea import masks  # noqa: E402
from atenea.attention.backends import triton as backend  # noqa: E402
from atenea.attention.backends.triton.configs import configs_for  # noqa: E402
from tests.attention.triton_cases import (  # noqa: E402
    DEVICE,
    assert_close,
    record_launches,
    run_both,
)

DEFAULTS = {"dkdv": (64, 64, 4, 2, False, False), "dq": (64, 64, 4, 2, False)}


def _rows(what, config, causal, window, documents):
    return [{"what": what, "mask": mask, "config": list(config), "ms": ms}
            for mask, ms in zip(("causal", "window", "documents"), (causal, window, documents))
            if ms is not None]  # fmt: skip


def test_the_fastest_whole_candidate_wins_by_the_margin():
    """dK/dV: the default sums 3.0 + 0.6 + 0.6 = 4.2 ms; 128x64 queries down 2.7 + 0.55 + 0.55
    = 3.8 < 0.98 * 4.2 = 4.116 wins. A candidate timed at causal only (1.0 ms) is no winner,
    nor one that failed, nor the bounds-kept row. dQ: 3.75 against the default's 3.8 is within
    the 2% margin (3.724), so the default stays and the change names dK/dV's fields only."""
    rows = (_rows("dkdv", DEFAULTS["dkdv"], 3.0, 0.6, 0.6)
            + [{"what": "dkdv", "mask": "causal", "config": "defaults, bounds kept (EVEN off)",
                "ms": 0.1}]
            + _rows("dkdv", (128, 64, 8, 2, True, True), 2.7, 0.55, 0.55)
            + _rows("dkdv", (32, 64, 4, 2, False, False), 1.0, None, None)
            + [{"what": "dkdv", "mask": m, "config": [64, 128, 8, 2, False, False], "error": "x"}
               for m in ("causal", "window", "documents")]
            + _rows("dq", DEFAULTS["dq"], 2.9, 0.45, 0.45)
            + _rows("dq", (128, 64, 8, 2, False), 2.85, 0.45, 0.45)
            + [{"what": "profile", "mask": "causal", "forward": 2.0}])  # fmt: skip
    chosen = triton_tuning.best_backward(rows, DEFAULTS)
    assert chosen["change"] == {"block_m1": 128, "block_n1": 64, "kv_warps": 8, "kv_stages": 2,
                                "kv_direct": True, "kv_tma": True}  # fmt: skip
    kv, q = chosen["passes"]["dkdv"], chosen["passes"]["dq"]
    assert (kv["default_ms"], kv["best"], kv["best_ms"]) == (4.2, [128, 64, 8, 2, True, True],
                                                              3.8)  # fmt: skip
    assert (q["default_ms"], q["best"], q["best_ms"]) == (3.8, [64, 64, 4, 2, False], 3.8)
    # a dQ candidate past the margin (3.7 < 3.724) does win, beside dK/dV's
    rows += _rows("dq", (64, 64, 4, 2, True), 2.8, 0.45, 0.45)
    change = triton_tuning.best_backward(rows, DEFAULTS)["change"]
    assert (change["block_m2"], change["num_warps"], change["dq_tma"]) == (64, 4, True)
    assert triton_tuning.best_backward([], DEFAULTS) == {"change": {}, "passes": {}}
    # a default not timed at every mask: the fastest whole candidate wins, no margin to keep
    partial = _rows("dq", DEFAULTS["dq"], 2.9, None, None) + _rows("dq", (128, 64, 8, 2, False),
                                                                  2.85, 0.45, 0.45)  # fmt: skip
    q = triton_tuning.best_backward(partial, DEFAULTS)["passes"]["dq"]
    assert (q["default_ms"], q["best"], q["whole"]) == (None, [128, 64, 8, 2, False], 1)


def test_winners_file_goes_from_the_sweep_to_gpu_py(tmp_path):
    path = tmp_path / "winners.json"
    rows = _rows("dkdv", DEFAULTS["dkdv"], 3.0, 0.6, 0.6) + _rows(
        "dkdv", (128, 64, 8, 2, True, True), 2.7, 0.55, 0.55
    )
    triton_tuning.write_winners(str(path), rows, DEFAULTS, head_dim=128, group=1, length=16384)
    assert triton_tuning.load_backward(str(path), 128)["block_m1"] == 128
    with pytest.raises(SystemExit, match="chosen for head size 128, group 1; this run is head "
                                         "size 64, group 1"):  # fmt: skip
        triton_tuning.load_backward(str(path), 64)
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "change": {"block_q": 64}}))
    with pytest.raises(SystemExit, match=r"unknown fields \['block_q'\]"):
        triton_tuning.load_backward(str(path), 128)
    with pytest.raises(SystemExit, match="cannot read it"):
        triton_tuning.load_backward(str(tmp_path / "missing.json"), 128)
    path.write_text(json.dumps([{"what": "dkdv"}]))  # the sweep's --json, given by mistake
    with pytest.raises(SystemExit, match="no winners file"):
        triton_tuning.load_backward(str(path), 128)
    # a sweep stopped before any candidate beside the defaults was timed chose nothing
    path.unlink()
    only_defaults = _rows("dkdv", DEFAULTS["dkdv"], 3.0, 0.6, 0.6)
    assert triton_tuning.write_winners(str(path), only_defaults, DEFAULTS, head_dim=128,
                                       group=1, length=16384) is None  # fmt: skip
    assert not path.exists()
    # a default that failed at one mask beside a whole candidate: that candidate is a winner
    partly = _rows("dkdv", DEFAULTS["dkdv"], 3.0, None, 0.6) + _rows(
        "dkdv", (128, 64, 8, 2, True, True), 2.7, 0.55, 0.55
    )
    written = triton_tuning.write_winners(str(path), partly, DEFAULTS, head_dim=128, group=1,
                                          length=16384)  # fmt: skip
    assert written and triton_tuning.load_backward(str(path), 128)["kv_tma"] is True


def test_gpu_py_says_in_one_line_that_it_cannot_read_the_tuning(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--only", "attention",
                           "--backward-tuning", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("--backward-tuning ")


@pytest.fixture
def launches(monkeypatch):
    """Restores the library's configs after the test; yields the dK/dV and dQ launches'
    blocks, orientation and warps as each received them."""
    monkeypatch.setattr(backend, "configs_for", configs_for)
    names = ("BLOCK_M", "BLOCK_N", "EVEN", "num_warps")
    yield {"kv": record_launches(monkeypatch, "attention_backward_kv", *names, "DIRECT"),
           "q": record_launches(monkeypatch, "attention_backward_q", *names)}  # fmt: skip
    triton_tuning.with_backward({})


def test_a_tuning_reaches_the_launches_and_the_results_stay_right(launches):
    """Both passes' blocks from one change; the dQ pass's warps (4) leave the dK/dV pass's
    (the default's 8, which it takes from ``num_warps`` when it has none of its own); the
    gradients still match float64. ``{}`` restores the defaults."""
    shape = (1, 2, 2, 200, 200, 32)
    default = configs_for(32, 32, torch.float16, frozenset({"CAUSAL"}), tile=64)[1]
    assert default.kv_warps is None and default.num_warps == 8
    triton_tuning.with_backward({"block_m1": 32, "block_n1": 64, "kv_direct": True,
                                 "block_m2": 32, "block_n2": 32, "num_warps": 4})  # fmt: skip
    assert_close(*run_both(shape, masks.causal(), dtype=torch.float16), dtype=torch.float16)
    kv, q = launches["kv"][-1], launches["q"][-1]
    assert (kv["BLOCK_M"], kv["BLOCK_N"], kv["DIRECT"]) == (32, 64, True)
    assert kv["num_warps"] == 8
    assert (q["BLOCK_M"], q["BLOCK_N"], q["num_warps"]) == (32, 32, 4)
    triton_tuning.with_backward({})
    run_both(shape, masks.causal(), dtype=torch.float16)
    kv = launches["kv"][-1]
    assert (kv["BLOCK_M"], kv["BLOCK_N"], kv["DIRECT"]) == (default.block_m1, default.block_n1,
                                                             False)  # fmt: skip


def test_warm_runs_the_call_a_worker_would_and_says_why_one_fails(launches):
    """``compile_ahead``'s worker, in this process: the sweep's documents mask, four query
    heads a key head, the bounds kept (``EVEN`` off) and the candidate's blocks; a candidate
    the kernel cannot build (48 rows: not a power of two) comes back as its reason, not an
    exception, and the library's configs are restored either way."""
    job = dict(head_dim=16, group=4, length=256, mask="documents", bounds_kept=True,
               change={"block_m1": 16, "block_n1": 32}, device=DEVICE, dtype=torch.float16)  # fmt: skip
    assert triton_tuning.warm(job) is None
    kv = launches["kv"][-1]
    assert (kv["BLOCK_M"], kv["BLOCK_N"], kv["EVEN"]) == (16, 32, False)
    assert backend.configs_for is configs_for
    failed = triton_tuning.warm({**job, "change": {"block_m1": 48}, "bounds_kept": False})
    assert failed and backend.configs_for is configs_for


def test_the_sweep_times_each_default_first_and_every_candidate_once():
    import gpu_backward_sweep as sweep

    plan = sweep._sweep_plan(DEFAULTS)
    assert plan[:3] == [("dkdv", DEFAULTS["dkdv"]), ("dq", DEFAULTS["dq"]), ("dkdv", None)]
    assert plan[3:5] == [("dkdv", sweep.KV_CANDIDATES[0]), ("dq", sweep.Q_CANDIDATES[0])]
    assert len(plan) == len(set(plan))
    assert {c for p, c in plan if p == "dkdv"} == {*sweep.KV_CANDIDATES, DEFAULTS["dkdv"], None}
    assert {c for p, c in plan if p == "dq"} == {*sweep.Q_CANDIDATES, DEFAULTS["dq"]}
    at_64 = sweep._sweep_plan(DEFAULTS, head_dim=64)  # that head size's favourite leads
    assert at_64[3] == ("dkdv", sweep.KV_FIRST[64][0]) and sorted(at_64, key=str) == sorted(
        plan, key=str
    )


def test_compile_ahead_runs_the_jobs_in_spawned_workers():
    """The sweep's ``--jobs``: each job's call in a worker process (spawned, as CUDA needs),
    the reasons of the failing ones back in order; one process runs nothing."""
    job = dict(head_dim=16, group=1, length=128, mask="causal", bounds_kept=False, change={},
               device=DEVICE, dtype=torch.float16)  # fmt: skip
    jobs = [job, {**job, "change": {"block_n1": 48}}]
    done = triton_tuning.compile_ahead(jobs, workers=2)
    assert done[0] is None and done[1] and len(done) == 2
    assert triton_tuning.compile_ahead(jobs, workers=1) == [None, None]


def test_agreement_flags_a_tuning_that_changes_the_numbers(monkeypatch, launches):
    """``gpu.py --backward-tuning`` checks the crowned blocks against the defaults before it
    times them: a right tuning agrees at every mask; a dK/dV pass that adds 1 to dK when its
    tiles lie queries down (a stand-in for a build broken on the GPU) disagrees."""
    from atenea.attention.backends.triton import launch

    tuning = {"block_m1": 32, "block_n1": 64, "kv_direct": True, "kv_tma": True}
    small = dict(head_dim=16, length=256, device=DEVICE, dtype=torch.float16)
    rows = triton_tuning.agreement(tuning, **small)
    assert [r["mask"] for r in rows] == ["causal", "window", "documents"]
    assert all(r["agrees"] and r["relative_max_diff"] < 1e-2 for r in rows)
    # the rows go into gpu.py's attention table, whose report reads them among the timings
    import gpu

    table = gpu.report({"attention": rows, "lse": [], "decode": [], "training": []})
    assert table.count("tuned against the defaults: agree") == 3
    real = launch.attention_backward_kv

    class Broken:
        def __getitem__(self, grid):
            def launch_kernel(*args, **kwargs):
                real[grid](*args, **kwargs)
                if kwargs["DIRECT"]:
                    args[6].add_(1.0)  # dk

            return launch_kernel

    monkeypatch.setattr(launch, "attention_backward_kv", Broken())
    assert not any(r["agrees"] for r in triton_tuning.agreement(tuning, **small))
    # a tuned build that cannot run (48 rows: no power of two) is a row that disagrees
    failed = triton_tuning.agreement({"block_m1": 48}, **small)
    assert not any(r["agrees"] for r in failed) and all("error" in r for r in failed)
    assert "DISAGREE" in gpu.report({"attention": failed, "lse": [], "decode": [],
                                     "training": []})  # fmt: skip
