"""The families' renaming rules and yes/no answers, seen one seam below ``load_pretrained``:
every tensor of a folder ``transformers`` wrote is renamed to atenea's name with atenea's
shape, renamed back to the very name and values, and written under the names ``transformers``
reads; each model has exactly one family, or none; each family's refusals are one line naming
the tensor."""

import json
import re
from dataclasses import replace

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import atenea
from atenea.models import (
    CheckpointError,
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
    load_weights,
    save_pretrained,
)
from atenea.models.pretrained import bert, gpt2, llama, read_json_object, read_tensor_folder
from atenea.models.pretrained.folder import FAMILIES
from atenea.models.pretrained.rules import convert, rename
from tests.models.tiny import VOCAB, bert_config, gpt2_config, llama_config, randomize

HF_CASES = {
    "BertModel": (lambda: transformers.BertModel(bert_config()), bert.FAMILY),
    "BertForMaskedLM": (lambda: transformers.BertForMaskedLM(bert_config()), bert.FAMILY),
    "BertForSequenceClassification": (
        lambda: transformers.BertForSequenceClassification(bert_config(num_labels=3)),
        bert.FAMILY,
    ),
    "GPT2LMHeadModel": (lambda: transformers.GPT2LMHeadModel(gpt2_config()), gpt2.FAMILY),
    "LlamaForCausalLM": (lambda: transformers.LlamaForCausalLM(llama_config()), llama.FAMILY),
    "LlamaForCausalLM_tied": (
        lambda: transformers.LlamaForCausalLM(llama_config(tie_word_embeddings=True)),
        llama.FAMILY,
    ),
}


def _own_tensors(model):
    """The state dict without the second name of a tied tensor (what a checkpoint holds)."""
    seen, own = set(), {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            own[name] = tensor.detach()
    return own


@pytest.mark.parametrize("case", HF_CASES)
def test_rules_map_every_tensor_both_ways(case, tmp_path):
    build, family = HF_CASES[case]
    randomize(build()).save_pretrained(tmp_path)
    hf = read_json_object(tmp_path / "config.json")
    tensors = read_tensor_folder(tmp_path)
    assert hf["model_type"] == family.model_type and FAMILIES[hf["model_type"]] is family

    plan = family.plan_load(hf, set(tensors))
    ours = convert(tensors, plan.rules, to="ours", ignore=family.ignore)
    model = plan.model_class(plan.config, **plan.kwargs)
    expected = _own_tensors(model)
    assert set(ours) == set(expected)
    for name, tensor in ours.items():  # transposed where the checkpoint stores (in, out)
        assert tensor.shape == expected[name].shape, name

    kept = {n for n in tensors if not any(re.fullmatch(p, n) for p in family.ignore)}
    back = convert(ours, plan.rules, to="hf")
    assert set(back) == kept
    for name in kept:
        assert torch.equal(back[name], tensors[name]), name

    # writing: the model's own plan gives the names transformers reads (GPT-2 without the
    # optional "transformer." prefix, which transformers accepts either way)
    save = family.plan_save(model)
    assert save is not None and save.config["model_type"] == family.model_type
    written = convert(expected, save.rules, to="hf")
    assert set(written) == {n.removeprefix("transformer.") for n in kept}


ENCODER = EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB)
MODELS = {
    # name: (build, the family that writes it; None: atenea's own format)
    "bert": (lambda: EncoderModel(ENCODER), "bert"),
    "bert_mlm": (lambda: EncoderForMaskedLM(ENCODER), "bert"),
    "bert_classifier": (lambda: EncoderForSequenceClassification(ENCODER, num_labels=2), "bert"),
    "bert_mean_pooling": (
        lambda: EncoderForSequenceClassification(ENCODER, num_labels=2, pooling="mean"),
        None,
    ),
    "pre_norm_encoder": (
        lambda: EncoderModel(replace(ENCODER, norm_position="pre")),
        None,
    ),
    "gpt2": (lambda: DecoderModel(DecoderConfig.from_name("gpt2-tiny", vocab_size=VOCAB)), "gpt2"),
    "llama": (
        lambda: DecoderModel(DecoderConfig.from_name("llama-tiny", vocab_size=VOCAB)),
        "llama",
    ),
    "interleaved_rotary": (
        lambda: DecoderModel(
            DecoderConfig.from_name("llama-tiny", vocab_size=VOCAB, rope_layout="interleaved")
        ),
        None,
    ),
    "encoder_decoder": (
        lambda: EncoderDecoderModel(EncoderDecoderConfig.from_name("transformer-tiny")),
        None,
    ),
}


@pytest.mark.parametrize("case", MODELS)
def test_each_model_has_one_family_or_none(case, tmp_path):
    build, expected = MODELS[case]
    model = build()
    answers = [f.model_type for f in FAMILIES.values() if f.plan_save(model) is not None]
    assert answers == ([expected] if expected else [])
    save_pretrained(model, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())["model_type"]
    assert written == (expected or "atenea")


def _atenea_folder(kind, folder):
    """A folder atenea wrote for ``kind`` (BERT as the masked-LM model: the "bert." prefix)."""
    model = randomize(MODELS[{"bert": "bert_mlm"}.get(kind, kind)][0]())
    save_pretrained(model, folder)
    return model


def _edit_tensors(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def _one_line_error(folder, pattern):
    with pytest.raises(CheckpointError, match=pattern) as error:
        atenea.load_pretrained(folder)
    assert "\n" not in str(error.value)
    return str(error.value)


FAMILY_TENSORS = {
    # family: (a checkpoint tensor, atenea's name for it)
    "bert": (
        "bert.encoder.layer.1.output.dense.weight",
        "encoder.layers.1.feed_forward.down.weight",
    ),
    "gpt2": ("h.0.attn.c_proj.weight", "layers.0.attention.o_proj.weight"),
    "llama": ("model.layers.1.self_attn.k_proj.weight", "layers.1.attention.k_proj.weight"),
}


@pytest.mark.parametrize("kind", FAMILY_TENSORS)
def test_missing_tensor_is_named_as_in_the_checkpoint(kind, tmp_path):
    hf_name, _ = FAMILY_TENSORS[kind]
    _atenea_folder(kind, tmp_path)
    _edit_tensors(tmp_path, lambda t: t.pop(hf_name))
    _one_line_error(tmp_path, re.escape(f"{tmp_path}: missing tensors '{hf_name}'") + "$")


@pytest.mark.parametrize("kind", FAMILY_TENSORS)
def test_shape_mismatch_names_the_tensor(kind, tmp_path):
    hf_name, our_name = FAMILY_TENSORS[kind]
    _atenea_folder(kind, tmp_path)

    def grow(tensors):
        tensors[hf_name] = torch.zeros(tensors[hf_name].shape[0] + 1, tensors[hf_name].shape[1])

    _edit_tensors(tmp_path, grow)
    _one_line_error(tmp_path, re.escape(f"{tmp_path}: tensor for '{our_name}' has shape"))


@pytest.mark.parametrize("kind", FAMILY_TENSORS)
def test_unexpected_tensor_names_the_folder_and_the_tensor(kind, tmp_path):
    _atenea_folder(kind, tmp_path)
    _edit_tensors(tmp_path, lambda t: t.update({"extra.weight": torch.zeros(2)}))
    _one_line_error(
        tmp_path, re.escape(f"{tmp_path}: unexpected tensors in the checkpoint: 'extra.weight'")
    )


def test_unknown_family_lists_the_known_ones(tmp_path):
    _atenea_folder("gpt2", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))
    message = _one_line_error(tmp_path, "unknown architecture model_type='mamba'")
    assert message.endswith("atenea reads: bert, gpt2, llama, vit, atenea")


def test_rename_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="to: expected 'ours' or 'hf', got 'theirs'"):
        rename(["wte.weight"], gpt2.RULES, to="theirs")


@pytest.mark.parametrize("kind", ["bert", "llama", "encoder_decoder"])
def test_load_weights_fills_a_model_in_place(kind, tmp_path):
    saved = _atenea_folder(kind, tmp_path)
    fresh = type(saved)(saved.config)
    load_weights(tmp_path, fresh)
    a, b = saved.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_weights_refuses_another_architecture(tmp_path):
    _atenea_folder("gpt2", tmp_path)
    wider = DecoderModel(DecoderConfig.from_name("gpt2-tiny", vocab_size=VOCAB + 1))
    with pytest.raises(CheckpointError, match=r"'token_embedding\.weight' has shape \(97, "):
        load_weights(tmp_path, wider)
