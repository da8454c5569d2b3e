"""``explain`` for encoder-decoder models: captured maps against ``output_attentions``, the
greedy target against ``atenea.generate``, the alignment of a model trained to copy, the report
data (non-square cross maps) and ``atenea explain`` end to end."""

import json
import re

import pytest
import torch

import atenea
from atenea.cli.main import main
from atenea.inspect import ExplainError, capture, explain, explain_seq2seq, report_data

SOURCE = "el banco cerró la puerta"  # 5 tokens


@pytest.fixture(scope="module")
def loaded(tiny_seq2seq):
    return atenea.load_pretrained(tiny_seq2seq)


def test_captured_maps_equal_output_attentions(loaded):
    model, tokenizer = loaded
    e = explain_seq2seq(SOURCE, model, tokenizer, target="the bank closed")
    assert e.output_tokens == ["the", "bank", "closed", "</s>"]
    assert e.decoder_tokens == ["<s>", "the", "bank", "closed"]
    src = torch.tensor([tokenizer.encode(SOURCE)])
    decoder_input = torch.tensor([[2, *tokenizer.encode("the bank closed")]])
    with torch.no_grad():
        out = model(src, decoder_input, output_attentions=True)
    # 3 decoder layers, 4 heads, 4 target rows x 5 source columns: not square
    assert e.cross_maps.shape == (3, 4, 4, 5)
    assert e.encoder_maps.shape == (2, 4, 5, 5) and e.decoder_maps.shape == (3, 4, 4, 4)
    torch.testing.assert_close(e.cross_maps, torch.cat(out.cross_attentions))
    torch.testing.assert_close(e.encoder_maps, torch.cat(out.encoder_attentions))
    torch.testing.assert_close(e.decoder_maps, torch.cat(out.attentions))
    assert torch.equal(e.decoder_maps.triu(1), torch.zeros_like(e.decoder_maps))  # causal
    torch.testing.assert_close(e.cross_maps.sum(-1), torch.ones(3, 4, 4))
    by_capture = capture(model, src, target_ids=decoder_input, kind="cross", layers=[1])
    torch.testing.assert_close(by_capture[0], e.cross_maps[1])


def test_generated_target_is_greedy_and_aligned(loaded):
    model, tokenizer = loaded
    e = explain_seq2seq(SOURCE, model, tokenizer, max_new_tokens=12)
    src = torch.tensor([tokenizer.encode(SOURCE)])
    greedy = atenea.generate(model, src, max_new_tokens=12)[0]
    assert e.generated and e.output_tokens == tokenizer.tokens(greedy[1:])
    assert e.decoder_tokens == tokenizer.tokens(greedy[:-1])
    # teacher forcing on the generated tokens predicts each of them again
    with torch.no_grad():
        logits = model(src, greedy[None, :-1]).logits[0]
    assert torch.equal(logits.argmax(-1), greedy[1:])
    assert len(e.summary) == len(e.output_tokens) == 12  # the random model never ends


def test_alignment_summary_names_the_strongest_source_tokens(loaded):
    """Each line of the summary against the argmax of ``cross_attentions`` (heads averaged)
    of the last layer and of the layer with the lowest mean row entropy, computed here."""
    model, tokenizer = loaded
    e = explain_seq2seq(SOURCE, model, tokenizer, target="the bank closed the door")
    src = torch.tensor([tokenizer.encode(SOURCE)])
    decoder_input = torch.tensor([[2, *tokenizer.encode("the bank closed the door")]])
    with torch.no_grad():
        cross = model(src, decoder_input, output_attentions=True).cross_attentions
    mean = torch.cat(cross).mean(1)  # (layers, T, S)
    entropy = -(mean * mean.log()).sum(-1).mean(-1)
    sharpest = int(entropy.argmin())
    assert e.sharpest_layer == sharpest
    words = SOURCE.split()
    for t, line in enumerate(e.summary):
        last_best = words[int(mean[-1, t].argmax())]
        assert re.match(rf"\s*{re.escape(e.output_tokens[t])} -> L2: {last_best} 0\.\d\d", line)
        if sharpest != 2:
            assert f"| L{sharpest}: {words[int(mean[sharpest, t].argmax())]} " in line


def test_report_data_has_three_kinds_and_non_square_cross(loaded):
    model, tokenizer = loaded
    e = explain_seq2seq(SOURCE, model, tokenizer, target="the bank")
    data = report_data([e], "tiny")
    assert data["initial"] == {"layer": 2, "head": -1, "kind": "cross"}
    panel = data["panels"][0]
    cross = panel["kinds"]["cross"]
    assert cross["tokens"] == ["the", "bank", "</s>"] and cross["key_tokens"] == e.source_tokens
    assert len(cross["maps"][0][0]) == 3 and len(cross["maps"][0][0][0]) == 5
    assert panel["kinds"]["decoder"]["causal"] and len(panel["kinds"]["encoder"]["layers"]) == 2
    assert (
        len(panel["rollout"]) == 5 and "encoder's self-attention only" in panel["rollout_caption"]
    )
    json.dumps(data, allow_nan=False)  # valid JSON for the page: no NaN in the descriptors
    assert cross["descriptions"][0]["self_share"] is None


def test_explain_refuses_an_encoder_decoder_and_bad_targets(loaded):
    model, tokenizer = loaded
    with pytest.raises(ExplainError, match="explain_seq2seq"):
        explain(SOURCE, model, tokenizer)
    # The library names its arguments (atenea explain shows them as flags: test_cli_bad_input_is_a_message).
    with pytest.raises(ExplainError, match="^target: the target is empty"):
        explain_seq2seq(SOURCE, model, tokenizer, target="  ")
    with pytest.raises(ExplainError, match="^max_new_tokens: expected an integer >= 1"):
        explain_seq2seq(SOURCE, model, tokenizer, max_new_tokens=0)
    with pytest.raises(
        ExplainError, match="^max_tokens: the source has 20[0-9] tokens.*at most 160"
    ):
        explain_seq2seq(" ".join(["el"] * 200), model, tokenizer)


def test_cli_end_to_end(tiny_seq2seq, tmp_path, capsys):
    out, pictures = tmp_path / "report.html", tmp_path / "png"
    args = ["explain", SOURCE, "--model", str(tiny_seq2seq), "--out", str(out)]
    code = main([*args, "--png", str(pictures), "--max-new-tokens", "6"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "2+3 layers (encoder+decoder) x 4 heads" in text
    assert "target (generated greedily): " in text and "target tokens (6): " in text
    assert "alignment: each target token -> the source tokens" in text
    assert len(re.findall(r"^\s+\S+ -> L2: \S+ 0\.\d\d", text, re.M)) == 6
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html and '"kinds":{' in html
    names = {p.name for p in pictures.iterdir()}
    assert {"cross_L2_mean.png", "rollout.png", "model_view_cross.png"} <= names
    from PIL import Image

    with Image.open(pictures / "cross_L2_mean.png") as image:
        assert image.width > 0 and image.height > 0

    code = main([*args, "--target", "the bank", "--layer", "1", "--head", "2"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "target (given): the bank" in text and "target tokens (3): the bank </s>" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--focus", "banco"], "--focus is for encoder and decoder models"),
        (["--pair", "x"], "--pair is for encoder and decoder models"),
        (["--layer", "3"], "--layer 3: this model's decoder (cross-attention) has layers 0..2"),
        (["--layer", "0", "--head", "4"], "--head 4: this model has heads 0..3"),
        (["--max-new-tokens", "0"], "--max-new-tokens: expected an integer >= 1"),
    ],
)
def test_cli_bad_input_is_a_message(extra, message, tiny_seq2seq, tmp_path, capsys):
    code = main(
        ["explain", SOURCE, "--model", str(tiny_seq2seq), "--out", str(tmp_path / "r.html"), *extra]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_target_on_an_encoder_is_refused(tiny_bert, tmp_path, capsys):
    code = main(["explain", "the robot", "--model", str(tiny_bert), "--target", "x",
                 "--out", str(tmp_path / "r.html")])  # fmt: skip
    assert code == 2 and "--target is for encoder-decoder models" in capsys.readouterr().err
