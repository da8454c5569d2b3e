"""Small trained models shared by the ``predict`` and ``evaluate`` tests (trained once)."""

import csv

import pytest
import torch

from atenea.cli.main import main

SMALL = ["--set", "dim=32", "--set", "num_layers=1", "--set", "num_heads=2",
         "--set", "ffn_hidden=64", "--quiet", "--eval-every", "0", "--seed", "0"]  # fmt: skip


def run(*args) -> int:
    return main([str(a) for a in args])


def _one_thread_run(*args) -> int:
    threads = torch.get_num_threads()  # module fixtures run before the autouse one-thread one
    torch.set_num_threads(1)
    try:
        return run(*args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """reviews.csv (the word great / awful decides the label), dates.tsv (one-word
    targets), notes.txt."""
    folder = tmp_path_factory.mktemp("data")
    rows = [(f"{'great' if i % 2 else 'awful'} film {i % 7}", "good" if i % 2 else "bad")
            for i in range(64)]  # fmt: skip
    with (folder / "reviews.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("review", "stars"), *rows])
    dates = [f"{d} de mayo\t{d:02d}-05" for d in range(1, 29)]
    (folder / "dates.tsv").write_text("source\ttarget\n" + "\n".join(dates) + "\n")
    (folder / "notes.txt").write_text("the cat sat on the mat.\n" * 60)
    return folder


@pytest.fixture(scope="session")
def classifier(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reviews"
    assert _one_thread_run(
        "train", "classify", "--data", small_data / "reviews.csv", "--text-column", "review",
        "--label-column", "stars", "--steps", 12, "--batch-size", 16, "--lr", 1e-2,
        "--out", out, *SMALL,
    ) == 0  # fmt: skip
    return out


@pytest.fixture(scope="session")
def translator(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dates"
    assert _one_thread_run(
        "train", "translate", "--data", small_data / "dates.tsv", "--steps", 5, "--batch-size",
        4, "--tokenizer", "chars", "--out", out, *SMALL,
    ) == 0  # fmt: skip
    return out
