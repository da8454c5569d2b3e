"""``atenea generate`` end to end on a tiny saved model with its tokenizer."""

import subprocess
import sys

import pytest

from atenea.cli.main import main
from tests.generation import tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A GPT-2 folder as transformers writes it, plus a word-level tokenizer.json."""
    folder = tmp_path_factory.mktemp("gpt2-words")
    tiny.saved(tiny.hf_gpt2(), folder, tiny.word_tokenizer())
    return folder


class Recorder:
    """Stands in for sys.stdout and keeps every write apart."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return len(text)

    def flush(self):
        pass


def test_generate_streams_the_continuation(folder, monkeypatch):
    stdout = Recorder()
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["generate", "--model", str(folder), "--prompt", "w5 w17 w33",
                 "--max-new-tokens", "6"])  # fmt: skip
    assert code == 0
    text = "".join(stdout.writes)
    words = text.split()
    assert text.endswith("\n") and 1 <= len(words) <= 6
    assert all(w.startswith("w") for w in words)
    assert len(stdout.writes) == len(words) + 1  # word by word, as generated, then the newline


def test_sampling_repeats_with_its_seed_and_beams_print_at_the_end(folder, capsys):
    base = ["generate", "--model", str(folder), "--prompt", "w5 w17", "--max-new-tokens", "8"]
    runs = []
    for extra in (["--temperature", "1.5", "--seed", "3"],) * 2 + (["--num-beams", "3"],):
        assert main(base + extra) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] and runs[0].strip()
    assert runs[2].strip().startswith("w")


def test_console_script_runs(folder):
    result = subprocess.run(
        [sys.executable, "-m", "atenea", "generate", "--model", str(folder), "--prompt", "w1 w2",
         "--max-new-tokens", "3", "--top-p", "0.9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "   "], "--prompt: the prompt is empty"),
        (["--max-new-tokens", "-1"], "--max-new-tokens"),
        (["--top-p", "1.5"], "--top-p"),
        (["--num-beams", "0"], "--num-beams"),
        (["--temperature", "0"], "--temperature"),
        (["--prompt", " ".join(["w7"] * 70)], "--prompt: the prompt has 70 tokens"),
        (["--max-new-tokens", "200"], "--max-new-tokens: 1 + 200 new tokens exceed"),
        (["--prompt", "caf\udce9"], "--prompt is not valid UTF-8"),  # argv's undecodable bytes
    ],
)
def test_bad_input_is_one_line_and_exit_2(folder, args, message, capsys):
    argv = ["generate", "--model", str(folder), "--prompt", "w1", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_folder_without_tokenizer_or_model_is_a_message(tmp_path, capsys):
    bare = tmp_path / "bare"
    tiny.hf_gpt2().save_pretrained(bare)
    assert main(["generate", "--model", str(bare), "--prompt", "w1"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompt", "w1"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_model_that_generates_no_text_is_named(tmp_path, capsys):
    from atenea.models import EncoderConfig, EncoderModel, save_pretrained
    from atenea.training.tokenizers import train_tokenizer

    folder = tmp_path / "encoder"
    save_pretrained(EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=300)), folder)
    train_tokenizer(["w1 w2 w3"] * 9, kind="chars").save(folder)
    assert main(["generate", "--model", str(folder), "--prompt", "w1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"atenea generate: --model: {folder} is an EncoderModel, which generates no "
        f"text; give a decoder (gpt2, a run of atenea train lm) or a translator\n"
    )
