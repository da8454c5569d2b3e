"""``atenea train --resume`` goes on with the model, data and tokenizer of the checkpoint: a
flag that would change them is refused in one line (it was ignored without a word), and the
first command line given again, with ``--resume`` added, is accepted."""

import pytest

from tests.cli.conftest import SMALL, run


@pytest.fixture(scope="module")
def stopped_run(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lm"
    first = ["train", "lm", "--data", small_data / "notes.txt", "--max-length", 16,
             "--vocab-size", 300, "--batch-size", 2, "--out", out, *SMALL]  # fmt: skip
    assert run(*first, "--steps", 2, "--save-every", 1) == 0
    return out, first


def test_the_first_command_line_again_resumes(stopped_run):
    out, first = stopped_run
    assert run(*first, "--steps", 3, "--resume") == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (["--set", "num_layers=2"], "--set: {out} goes on with the model, data and tokenizer "
                                    "it was started with (--set dim=32 num_layers=1 "),
        (["--size", "small"], "--size: {out} goes on with the model, data and tokenizer it was "
                              "started with (--size tiny); drop --size, or start a new run"),
        (["--data", "other.txt"], "(--data "),
        (["--max-length", "32"], "(--max-length 16)"),
        (["--tokenizer", "chars"], "(--tokenizer bpe)"),
        # the tokenizer learned fewer than 300: the request is what is compared
        (["--vocab-size", "500"], "(--vocab-size 300)"),
    ],
)  # fmt: skip
def test_a_flag_that_would_change_the_run_is_refused(stopped_run, change, message, capsys):
    out, _ = stopped_run
    assert run("train", "lm", "--out", out, "--resume", "--steps", 3, *change) == 2
    err = capsys.readouterr().err
    assert message.format(out=out) in err and err.count("\n") == 1
