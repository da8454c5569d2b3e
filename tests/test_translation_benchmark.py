"""A smoke run of ``benchmarks/translation_length.py`` on the real Bible (a few steps, a few
test verses): it trains the three architectures, writes its table, plot and JSON. Nothing about
speed or quality is asserted."""

import json
from pathlib import Path

import pytest

from atenea.training.datasets import bible

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.skipif(
    not (bible.MODULES_ROOT / bible.ENGLISH / "nt.bzv").is_file()
    or not (bible.MODULES_ROOT / bible.SPANISH / "nt.bzv").is_file(),
    reason=f"the Bible modules are not installed: {bible.INSTALL}",
)
def test_translation_length_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import translation_length

    args = ["--steps", "2", "--batch-size", "4", "--eval-limit", "2", "--test-limit", "12",
            "--lengths", "8", "--reps", "1", "--examples", "1", "--out", str(tmp_path)]  # fmt: skip
    assert translation_length.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["training"]) == {"rnnencdec", "rnnsearch", "transformer"}
    assert results["bleu"]["all"]["verses"] == 12
    for name in ("bleu_by_length.png", "alignment.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| source words |" in capsys.readouterr().out
