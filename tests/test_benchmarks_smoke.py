"""Smoke runs of the benchmark scripts (tiny sizes, one repetition): they run, print their
table and write valid JSON. Speed is never asserted here."""

import json
from pathlib import Path

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
