"""``atenea explain --lang``: the summary is written from the numbers of the explanation in each
language; in English it is exactly what ``atenea explain`` has always printed, and Spanish
carries the same numbers."""

import re

import pytest

from atenea.cli.main import main
from atenea.inspect.explain import explain
from atenea.inspect.explain_lang import summary
from atenea.models import load_pretrained

from .conftest import sharpen

NUMBER = re.compile(r"\d+(?:\.\d+)?%?")


def _printed(args, capsys) -> list[str]:
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    return lines[
        : next(i for i, line in enumerate(lines) if line.startswith(("report:", "informe:"))) - 1
    ]


def test_english_summary_is_the_commands_own(tiny_bert, tmp_path, capsys):
    text = "the robot picked up the wrench because it was heavy"
    args = ["explain", text, "--model", str(tiny_bert), "--focus", "it",
            "--out", str(tmp_path / "r.html")]  # fmt: skip
    english = _printed(args, capsys)  # ATENEA_LANG=en in the tests: the original code path
    model, tokenizer = load_pretrained(tiny_bert)
    e = explain(text, model, tokenizer, focus="it")
    assert summary([e], str(tiny_bert), "EncoderModel", "en") == english


def test_spanish_summary_carries_the_same_numbers(tiny_bert, tmp_path, capsys):
    model, tokenizer = load_pretrained(tiny_bert)
    sharpen(model, 4.0)
    e = explain("the cat sat on the mat because it was heavy", model, tokenizer, focus="cat")
    english, spanish = (summary([e], "tiny", "EncoderModel", lang) for lang in ("en", "es"))
    assert spanish != english and spanish[0].endswith("(EncoderModel, 3 capas x 4 cabezas)")
    assert [NUMBER.findall(line) for line in spanish] == [NUMBER.findall(line) for line in english]
    args = ["explain", "el banco cerró", "--model", str(tiny_bert), "--lang", "es",
            "--out", str(tmp_path / "r.html")]  # fmt: skip
    assert any(line.startswith("cabezas con un patrón claro") for line in _printed(args, capsys))


def test_unknown_language_is_one_line(tiny_bert, capsys):
    assert main(["explain", "the cat", "--model", str(tiny_bert), "--lang", "xx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atenea explain: --lang xx: we have") and len(err.splitlines()) == 1


@pytest.mark.parametrize("word", ["it", None])
def test_every_head_pattern_has_words_in_both_languages(tiny_bert, word):
    from atenea.inspect.explain_lang import head_text

    model, tokenizer = load_pretrained(tiny_bert)
    e = explain("the robot picked up the wrench because it was heavy", model, tokenizer, focus=word)
    for d in e.descriptions:
        assert head_text(d, "en") == d.text  # the library's own words, in English
        assert head_text(d, "es").startswith(d.name)


def test_seq2seq_summary_in_both_languages(tiny_seq2seq, tmp_path, capsys):
    from atenea.inspect.explain_lang import seq2seq_summary
    from atenea.inspect.seq2seq import explain_seq2seq

    text = "el banco cerró la puerta"
    args = ["explain", text, "--model", str(tiny_seq2seq), "--out", str(tmp_path / "r.html")]
    english = _printed(args, capsys)
    model, tokenizer = load_pretrained(tiny_seq2seq)
    e = explain_seq2seq(text, model, tokenizer)
    assert seq2seq_summary([e], str(tiny_seq2seq), model.config, "en") == english
    spanish = seq2seq_summary([e], str(tiny_seq2seq), model.config, "es")
    assert spanish != english and spanish[2].startswith("fuente: ")
    assert [NUMBER.findall(line) for line in spanish] == [NUMBER.findall(line) for line in english]
    assert _printed(args + ["--lang", "es"], capsys) == spanish
