"""``atenea train images``, ``translate --arch rnnsearch | rnnencdec``, ``lm`` and ``mlm`` under
``torchrun``: two ranks on the CPU (gloo) train the model that one process trains on the same
global batch (and ``--arch transformer``, whose task loss is the same). What could make them differ: an augmentation drawn for the whole batch (each
rank would draw the first half's shifts), a token-mean loss over a rank's half (the two halves
hold different numbers of target tokens), the RNN's packed sequences or a parameter a model
leaves unused (DDP would wait for its gradient)."""

import random
import subprocess
from pathlib import Path

import pytest

import atenea
from atenea.cli.main import main
from tests.helpers import assert_same_weights, losses, torchrun

from .test_train import digit_folder

RUN = ["--eval-every", "0", "--save-every", "2", "--quiet", "--seed", "3", "--lr", "3e-3",
       "--warmup", "1"]  # fmt: skip
TINY_VIT = ["--set", "dim=16", "--set", "num_layers=1", "--set", "num_heads=2",
            "--set", "ffn_hidden=32", "--set", "image_size=8"]  # fmt: skip


def torchrun_atenea(*args) -> subprocess.CompletedProcess:
    """``atenea ARGS`` on two ranks under torchrun (``tests.helpers.torchrun``), with no
    traceback in what it printed."""
    done = torchrun("-m", "atenea", *args)
    assert "Traceback" not in done.stderr
    return done


def assert_two_ranks_equal_one(arguments, tmp_path):
    """The command on two ranks and in this process: the same losses, the same weights (Adam
    divides by a gradient's running RMS, so the all-reduce's rounding in a gradient near zero
    moves a weight by a fraction of a step: close, not equal, as in test_distributed.py)."""
    torchrun_atenea(*arguments, "--out", tmp_path / "ddp")
    assert main([str(a) for a in (*arguments, "--out", tmp_path / "one")]) == 0
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    two, _ = atenea.load_pretrained(tmp_path / "ddp")
    one, _ = atenea.load_pretrained(tmp_path / "one")
    assert_same_weights(two, one, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_images_with_augmentation_on_two_ranks_equal_one_process(tmp_path):
    data = digit_folder(tmp_path / "digits")
    arguments = ["train", "images", "--data", data, "--steps", 4, "--batch-size", 8, *TINY_VIT,
                 "--set", "augment=crop+flip", *RUN]  # fmt: skip
    assert_two_ranks_equal_one(arguments, tmp_path)


def dates_with_lengths_that_differ(path: Path, count=24) -> Path:
    """Spanish dates -> English dates, "1 de mayo de 1990" -> "May 1, 1990": targets of 11 to
    18 characters, so the two halves of a batch hold different numbers of target tokens."""
    rng = random.Random(5)
    spanish = ("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
               "diciembre").split()  # fmt: skip
    english = ("January February March April May June July August September October November "
               "December").split()  # fmt: skip
    lines = []
    for _ in range(count):
        day, month, year = rng.randint(1, 28), rng.randint(0, 11), rng.randint(1950, 2030)
        lines.append(f"{day} de {spanish[month]} de {year}\t{english[month]} {day}, {year}")
    path.write_text("source\ttarget\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["rnnsearch", "rnnencdec", "transformer"])
def test_translation_on_two_ranks_equals_one_process(arch, tmp_path):
    """The token-mean loss is the whole micro-batch's, whichever model (the Transformer shares
    the task's loss)."""
    data = dates_with_lengths_that_differ(tmp_path / "dates.tsv")
    arguments = ["train", "translate", "--arch", arch, "--data", data, "--validation", data,
                 "--tokenizer", "chars", "--max-length", 28, "--steps", 4, "--batch-size", 8,
                 *RUN]  # fmt: skip
    assert_two_ranks_equal_one(arguments, tmp_path)


def texts_of_random_lengths(folder: Path, seed: int) -> Path:
    """Six files of 20 lines of 3 to 30 words: rows predict different numbers of tokens."""
    rng = random.Random(seed)
    words = "the a cat dog sat ran on under mat table while because red blue".split()
    folder.mkdir()
    for i in range(6):
        lines = [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(20)]
        (folder / f"{i}.txt").write_text("\n".join(lines))
    return folder


TINY_TEXT_MODEL = ["--vocab-size", 300, "--set", "dim=32", "--set", "num_layers=1", "--set",
                   "num_heads=2", "--set", "ffn_hidden=64"]  # fmt: skip


@pytest.mark.slow
def test_lm_on_two_ranks_equals_one_process(tmp_path):
    """Packed rows predict different numbers of tokens (a document's first token and padding
    are not predicted), so the lm loss is a token mean over every rank's rows too."""
    folder = texts_of_random_lengths(tmp_path / "texts", seed=1)
    arguments = ["train", "lm", "--data", folder, "--steps", 4, "--batch-size", 8,
                 "--max-length", 32, *TINY_TEXT_MODEL, *RUN]  # fmt: skip
    assert_two_ranks_equal_one(arguments, tmp_path)


@pytest.mark.slow
def test_mlm_on_two_ranks_equals_one_process(tmp_path):
    """Each chunk is masked from its own generator (a rank's half gets the masks one process
    gives it), and the loss is a mean over every rank's masked tokens."""
    folder = texts_of_random_lengths(tmp_path / "texts", seed=2)
    arguments = ["train", "mlm", "--data", folder, "--steps", 4, "--batch-size", 8,
                 "--max-length", 24, *TINY_TEXT_MODEL, *RUN]  # fmt: skip
    assert_two_ranks_equal_one(arguments, tmp_path)
