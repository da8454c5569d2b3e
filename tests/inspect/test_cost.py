"""``atenea cost``: the memory counter against hand counts, the fitted exponents of the three
paths (the literal L x L path grows like L^2, the window like L), stopping before memory runs
out, and the command's output and errors."""

import pytest
import torch

from atenea.cli.main import main
from atenea.inspect.cost import PeakTracker, fit_exponent, run_cost

SMALL = [128, 256, 512, 1024]


def test_peak_tracker_counts_live_tensors():
    with PeakTracker() as alone:
        a = torch.zeros(1000)  # 4000 bytes
        del a
        b = torch.zeros(1000)  # the first one is gone: the peak stays at 4000
    with PeakTracker() as both:
        c = torch.zeros(1000)
        d = torch.zeros(500, dtype=torch.float64)  # 4000 more while c lives
    assert alone.peak == 4000 and both.peak == 8000
    assert b.numel() + c.numel() + d.numel() == 2500


def test_fit_exponent_of_exact_powers():
    assert fit_exponent([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    assert fit_exponent([10, 100], [5, 50]) == pytest.approx(1.0)


def test_memory_grows_like_l_squared_literally_and_like_l_with_a_window():
    result = run_cost(SMALL, window=32, repeats=1)
    memory = {path: exponents[1] for path, exponents in result.exponents.items()}
    assert 1.7 <= memory["literal"] <= 2.2
    assert 0.7 <= memory["window"] <= 1.2
    assert 0.8 <= memory["fused"] <= 1.2
    literal = {p.length: p.peak_bytes for p in result.points if p.path == "literal"}
    assert literal[1024] >= 1024 * 1024 * 4  # at least one float32 L x L matrix


def test_a_path_stops_before_it_would_not_fit():
    result = run_cost([256, 512, 4096], paths=("literal", "window"), window=32, repeats=1,
                      max_bytes=32 * 2**20)  # fmt: skip
    assert result.stopped["literal"][0] == 4096  # 4096^2 floats do not fit in 32 MiB
    assert "window" not in result.stopped
    assert {p.length for p in result.points if p.path == "literal"} == {256, 512}


@pytest.mark.slow
def test_time_exponents_on_small_lengths():
    """Time on a shared machine is noisy: the fastest of many calls, and wide ranges."""
    result = run_cost([512, 1024, 2048, 4096], window=64, repeats=5)
    literal, window = result.exponents["literal"][0], result.exponents["window"][0]
    assert 1.4 <= literal <= 3.2 and 0.4 <= window <= 1.6 and window < literal


def test_cost_command_in_spanish(tmp_path, capsys):
    png = tmp_path / "cost.png"
    args = ["cost", "--lengths", "64,128,256", "--window", "16", "--repeats", "1",
            "--max-memory", "0.0005", "--png", str(png), "--lang", "es"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "exponente ajustado, window" in out and "literal: parado antes de L = 256" in out
    assert png.exists() and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lengths", "1,a"], "--lengths 1,a: give whole numbers"),
        # before Python 3.13 argparse took "-5,10" for a flag: "expected one argument"
        (["--lengths", "-5,10"], "--lengths -5,10: give positive lengths"),
        (
            ["--paths", "literal,magic"],
            "--paths literal,magic: choose among literal, fused, window",
        ),
        (["--lang", "de"], "--lang de: we have"),
        # every path stopped, an empty table and exit 0, and "more than the -1073741824 B"
        (["--max-memory", "-1"], "--max-memory -1: give a positive number of GiB"),
        (["--max-memory", "0"], "--max-memory 0: give a positive number of GiB"),
    ],
)
def test_cost_bad_input_is_one_line(args, message, capsys):
    assert main(["cost", "--no-png", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
