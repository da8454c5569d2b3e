"""Round trips: Hugging Face folder -> atenea -> ``save_pretrained`` -> atenea gives the very
same tensors, and the folder atenea writes loads back in ``transformers`` with the same
logits. Models without a Hugging Face equivalent round-trip through atenea's own format."""

import json

import pytest
import torch
import transformers

import atenea
from atenea.models import (
    CheckpointError,
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForSequenceClassification,
    EncoderModel,
    save_pretrained,
)
from tests.helpers import max_error
from tests.models.tiny import VOCAB, bert_config, gpt2_config, llama_config, padded_batch, randomize

CASES = {
    "BertModel": (lambda: transformers.BertModel(bert_config()), "right"),
    "BertForMaskedLM": (lambda: transformers.BertForMaskedLM(bert_config()), "right"),
    "BertForSequenceClassification": (
        lambda: transformers.BertForSequenceClassification(bert_config(num_labels=3)),
        "right",
    ),
    "GPT2LMHeadModel": (lambda: transformers.GPT2LMHeadModel(gpt2_config(n_inner=40)), "left"),
    "GPT2LMHeadModel_untied": (
        lambda: transformers.GPT2LMHeadModel(gpt2_config(tie_word_embeddings=False)),
        "left",
    ),
    "LlamaForCausalLM": (lambda: transformers.LlamaForCausalLM(llama_config()), "left"),
    "LlamaForCausalLM_tied": (
        lambda: transformers.LlamaForCausalLM(llama_config(tie_word_embeddings=True)),
        "left",
    ),
}


def _hf_output(model, ids, mask, side):
    kwargs = dict(input_ids=ids, attention_mask=mask)
    if side == "left":
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(**kwargs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_hf_round_trip(case, tmp_path):
    build, side = CASES[case]
    original = randomize(build()).eval()
    original.save_pretrained(tmp_path / "hf")
    first, _ = atenea.load_pretrained(tmp_path / "hf")
    save_pretrained(first, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["model_type"] != "atenea"  # a Hugging Face folder
    second, _ = atenea.load_pretrained(tmp_path / "ours")
    assert type(second) is type(first)
    assert second.config == first.config
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    if case.endswith("_tied"):
        assert second.lm_head is None and first.config.tie_embeddings

    hf_class = type(original)
    reloaded, info = hf_class.from_pretrained(
        tmp_path / "ours", output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    reloaded.eval()
    ids, mask = padded_batch(side)
    real = mask.bool() if case != "BertForSequenceClassification" else slice(None)
    expected = _hf_output(original, ids, mask, side)
    assert torch.equal(_hf_output(reloaded, ids, mask, side)[real], expected[real])
    ours = second(ids, mask)
    ours = ours.logits if ours.logits is not None else ours.last_hidden_state
    assert max_error(ours[real], expected[real]) < 1e-4


def _assert_native_round_trip(model, folder, *inputs):
    save_pretrained(model, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "atenea"
    assert config["atenea_class"] == type(model).__name__
    loaded, tokenizer = atenea.load_pretrained(folder)
    assert tokenizer is None and type(loaded) is type(model) and loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    with torch.no_grad():
        x, y = model.eval()(*inputs), loaded(*inputs)
    key = "logits" if x.logits is not None else "last_hidden_state"
    assert torch.equal(getattr(x, key), getattr(y, key))
    return loaded


@pytest.mark.parametrize("shared", [False, True])
def test_encoder_decoder_round_trips_in_atenea_format(shared, tmp_path):
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny",
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB if shared else 89,
        share_embeddings=shared,
        tie_output=not shared,
        norm_position="pre",
    )
    model = randomize(EncoderDecoderModel(config))
    src, tgt = torch.randint(3, VOCAB, (2, 9)), torch.randint(3, 89, (2, 7))
    loaded = _assert_native_round_trip(model, tmp_path, src, tgt)
    if shared:
        assert loaded.target_embedding is loaded.source_embedding
    with pytest.raises(CheckpointError, match="no Hugging Face equivalent"):
        save_pretrained(model, tmp_path / "hf", format="hf")


def test_pre_norm_encoder_round_trips_in_atenea_format(tmp_path):
    config = EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB, norm_position="pre")
    model = randomize(EncoderModel(config))
    assert model.final_norm is not None and model.embedding_norm is None
    ids = torch.randint(1, VOCAB, (2, 11))
    _assert_native_round_trip(model, tmp_path, ids)


def test_decoder_without_hf_equivalent_round_trips_in_atenea_format(tmp_path):
    config = DecoderConfig.from_name("llama-tiny", vocab_size=VOCAB, rope_layout="interleaved")
    model = randomize(DecoderModel(config))
    _assert_native_round_trip(model, tmp_path, torch.randint(0, VOCAB, (2, 11)))


CLASSIFIERS = {
    "cls": (dict(), dict(pooling="cls"), "bert"),
    # no Hugging Face BERT equivalent: these must not come back as a pooled [CLS] classifier
    "mean": (dict(), dict(pooling="mean"), "atenea"),
    "no_pooler": (dict(pooler=False), dict(pooling="cls"), "atenea"),
    "no_segments": (dict(type_vocab_size=0), dict(pooling="cls"), "atenea"),
}


@pytest.mark.parametrize("case", CLASSIFIERS)
def test_classifier_keeps_its_pooling(case, tmp_path):
    config_overrides, head, model_type = CLASSIFIERS[case]
    config = EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB, **config_overrides)
    model = randomize(EncoderForSequenceClassification(config, num_labels=3, **head))
    ids, mask = padded_batch("right")
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == model_type
    loaded, _ = atenea.load_pretrained(tmp_path)
    assert loaded.head.pooling == head["pooling"] and loaded.num_labels == 3
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).logits, model.eval()(ids, mask).logits)


def test_save_rejects_unknown_format(tmp_path):
    model = EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB))
    with pytest.raises(ValueError, match="format: expected 'auto', 'hf' or 'atenea', got 'pt'"):
        save_pretrained(model, tmp_path, format="pt")
