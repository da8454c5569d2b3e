"""``atenea explain`` end to end: the summary, exit codes, a single-file report, escaping."""

import re

import pytest

from atenea.cli.main import main
from atenea.inspect.report import safe_json
from tests.inspect.conftest import HOSTILE

ROBOT = "The robot picked up the wrench because it was heavy."


def run(args, capsys):
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_minilm_summary_and_report(tmp_path, capsys):
    out = tmp_path / "report.html"
    code, text, err = run(
        [ROBOT, "--focus", "it", "--out", str(out), "--png", str(tmp_path / "png")], capsys
    )
    assert code == 0, err
    assert "6 layers x 12 heads" in text
    assert "focus 'it' (token 9)" in text
    lines = [line for line in text.splitlines() if line.strip().startswith("layer 5: it ->")]
    assert lines and re.search(r"it -> \S+ 0\.\d\d", lines[0])  # names its top targets
    assert "rollout: it ->" in text and "strongest link" in text
    html = out.read_text(encoding="utf-8")
    assert str(out.resolve()) in text
    # one self-contained file: no external resource, nothing fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "default-src 'none'" in html
    for name in ("head_L", "rollout.png", "model_view.png"):
        assert any(name in p.name for p in (tmp_path / "png").iterdir())


def test_compare_and_pair(tiny_bert, tmp_path, capsys):
    out = tmp_path / "r.html"
    code, text, err = run(
        [
            "the robot picked up",
            "--compare",
            "a cat sat on the mat",
            "--pair",
            "it was heavy",
            "--model",
            str(tiny_bert),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert text.count("text: ") == 2
    assert "the robot picked up ‖ it was heavy" in text
    assert '"panels":[' in out.read_text(encoding="utf-8")


def test_focus_follows_its_word_where_the_compared_text_has_it(tiny_bert, tmp_path, capsys):
    """The README's demo with --compare added: the focus word 'robot' is not in the second text,
    which is shown without a focus (it was an error); the first text must still hold it."""
    args = ["the robot picked up", "--focus", "robot", "--model", str(tiny_bert),
            "--out", str(tmp_path / "r.html")]  # fmt: skip
    code, text, err = run([*args, "--compare", "a cat sat on the mat"], capsys)
    assert code == 0, err
    assert text.count("text: ") == 2 and text.count("robot") >= 2
    code, _, err = run(["a cat sat", *args[1:], "--overwrite"], capsys)
    assert code == 2 and "'robot' is not a word of the text" in err


def test_hostile_tokens_reach_the_html_only_as_data(tiny_bert, tmp_path, capsys):
    out = tmp_path / "r.html"
    # U+2028 / U+2029 separate words here (whitespace), so they reach the text, not a token
    code, _, err = run(
        [
            " ".join(["the", *HOSTILE, "robot\u2028\u2029it"]),
            "--model",
            str(tiny_bert),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    html = out.read_text(encoding="utf-8")
    data = html.split('<script type="application/json" id="atenea-data">')[1].split("</script>")[0]
    for token in HOSTILE:
        assert token not in html  # never raw
    assert "<" not in data and ">" not in data and "&" not in data
    assert "\u2028" not in data and "\u2029" not in data
    assert safe_json({"t": "</script>"}) == '{"t":"\\u003c/script\\u003e"}'
    assert html.count("<script") == 2  # the data block and the report's own script


def test_truncation_is_announced(tiny_bert, tmp_path, capsys):
    code, text, _ = run(
        [
            " ".join(["the robot"] * 40),
            "--model",
            str(tiny_bert),
            "--out",
            str(tmp_path / "r.html"),
        ],
        capsys,
    )
    assert code == 0
    assert "note: The text has 82 tokens; the model reads at most 24" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["   "], "give a non-empty text"),
        (["the robot", "--layer", "9"], "--layer 9: this model has layers 0..2"),
        (["the robot", "--layer", "0", "--head", "4"], "--head 4: this model has heads 0..3"),
        (["the robot", "--head", "1"], "--head needs --layer"),
        (["the robot", "--focus", "banana"], "--focus: 'banana' is not a word of the text"),
        (["the robot", "--model", "/no/such/folder"], "no such folder"),
        (["the robot", "--max-tokens", "-3"], "--max-tokens: expected an integer >= 1, got -3"),
        (["the robot", "--max-tokens", "0"], "--max-tokens: expected an integer >= 1, got 0"),
        (["the robot", "--max-tokens", "2"], "cannot hold a token of the text besides the 2"),
        (["the robot", "--compare", "  "], "--compare: give a non-empty second text"),
        # bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape), which the
        # tokenizer refuses with a TypeError deep inside
        (["caf\udce9 robot"], "TEXT is not valid UTF-8"),
        (["the robot", "--focus", "caf\udce9"], "--focus is not valid UTF-8"),
        (["the robot", "--compare", "caf\udce9"], "--compare is not valid UTF-8"),
        (["the robot", "--pair", "caf\udce9"], "--pair is not valid UTF-8"),
        (["the robot", "--target", "caf\udce9"], "--target is not valid UTF-8"),
        # refused before the index is read: these flags did nothing with --passages
        (
            ["the robot", "--passages", "/no/index", "--focus", "robot"],
            "--focus: not used with --passages",
        ),
        (["the robot", "--passages", "/no/index", "--layer", "0"], "--layer: not used with"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(args, message, tiny_bert, tmp_path, capsys):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_bert)]
    code, _, err = run([*args, "--out", str(tmp_path / "r.html")], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_unwritable_out(tiny_bert, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(
        ["the robot", "--model", str(tiny_bert), "--out", str(blocker / "r.html")], capsys
    )
    assert code == 2 and "cannot write the report" in err
    code, _, err = run(["the robot", "--model", str(tiny_bert), "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in err


def test_decoder_models_give_causal_maps(tmp_path, capsys):
    import torch

    from atenea.inspect import explain
    from atenea.models import DecoderConfig, DecoderModel
    from tests.inspect.conftest import make_tokenizer

    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    model = DecoderModel(
        DecoderConfig.from_name("gpt2-tiny", vocab_size=tokenizer.vocab_size)
    ).eval()
    e = explain("the robot picked up the wrench", model, tokenizer, focus="wrench")
    assert e.causal and torch.equal(e.maps.triu(1), torch.zeros_like(e.maps))
    assert e.summary[0].startswith("layer 0: wrench ->")


def test_png_without_matplotlib_is_a_message(tiny_bert, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    out = tmp_path / "r.html"
    args = ["the robot", "--model", str(tiny_bert), "--out", str(out), "--png", str(tmp_path)]
    code, _, err = run(args, capsys)
    assert code == 2 and "--png: the pictures need matplotlib" in err and "Traceback" not in err
    assert out.exists()  # the report comes first


@pytest.mark.parametrize("flags", [["--layer", "1"], ["--head", "0"], ["--max-tokens", "8"]])
def test_text_flags_with_an_image_are_refused(flags, tiny_bert, tmp_path, capsys):
    """They were ignored without a word (the image report has no layer to start on)."""
    code, _, err = run(["--image", str(tmp_path / "any.png"), "--model", str(tiny_bert),
                        "--out", str(tmp_path / "r.html"), *flags], capsys)  # fmt: skip
    assert code == 2 and f"{flags[0]} is for texts, not for --image" in err
