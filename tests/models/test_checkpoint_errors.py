"""Hostile or broken checkpoint folders: each gives a ``CheckpointError`` (a ``ValueError``)
whose message names the file or the tensor and says what is wrong, never a traceback from
inside safetensors or ``load_state_dict``."""

import json
import re

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import atenea
from atenea.models import CheckpointError, DecoderConfig, DecoderModel, save_pretrained
from tests.models.tiny import VOCAB, bert_config


@pytest.fixture
def folder(tmp_path):
    """A GPT-2 checkpoint in Hugging Face layout (written by atenea)."""
    model = DecoderModel(DecoderConfig.from_name("gpt2-tiny", vocab_size=VOCAB))
    save_pretrained(model, tmp_path / "gpt2")
    return tmp_path / "gpt2"


def _edit_tensors(folder, edit):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _refused(path, pattern):
    with pytest.raises(CheckpointError, match=pattern) as error:
        atenea.load_pretrained(path)
    return str(error.value)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_the_fixture_loads(folder):
    model, _ = atenea.load_pretrained(folder)
    assert isinstance(model, DecoderModel) and model.config.vocab_size == VOCAB


def test_truncated_file(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(folder, re.escape(str(path)) + r": not a readable safetensors file \(truncated")


def test_garbage_bytes(folder):
    path = folder / "model.safetensors"
    path.write_bytes(bytes(range(256)) * 7)
    _refused(folder, re.escape(str(path)) + ": not a readable safetensors file")


def test_missing_tensor_is_named_as_in_the_checkpoint(folder):
    _edit_tensors(folder, lambda t: t.pop("h.1.mlp.c_fc.weight"))
    _refused(folder, re.escape(str(folder)) + r": missing tensors 'h\.1\.mlp\.c_fc\.weight'$")


def test_unexpected_tensor(folder):
    _edit_tensors(folder, lambda t: t.update({"h.0.attn.c_extra.weight": torch.zeros(3)}))
    _refused(folder, r"unexpected tensors in the checkpoint: 'h\.0\.attn\.c_extra\.weight'")


def test_wrong_shape(folder):
    _edit_tensors(folder, lambda t: t.update({"wte.weight": torch.zeros(VOCAB + 1, 64)}))
    _refused(
        folder,
        r"tensor for 'token_embedding\.weight' has shape \(98, 64\), the configuration needs "
        r"\(97, 64\)",
    )


def test_integer_tensor_where_floats_are_expected(folder):
    _edit_tensors(folder, lambda t: t.update({"ln_f.weight": torch.ones(64, dtype=torch.int64)}))
    _refused(
        folder,
        r"tensor for 'final_norm\.weight' has dtype torch\.int64, expected a floating-point",
    )


def test_unknown_model_type(folder):
    _edit_config(folder, lambda c: c.update(model_type="t5"))
    message = _refused(folder, r"unknown architecture model_type='t5'; atenea reads: bert, gpt2")
    assert "config.json" in message


def test_only_a_pickle(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    _refused(folder, r"holds only pytorch_model\.bin \(pickle files.*safetensors only")


def test_shard_lacking_a_tensor_of_the_index(folder):
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]
    save_file({n: tensors[n] for n in first}, folder / "model-00001-of-00002.safetensors")
    save_file({n: tensors[n] for n in second[1:]}, folder / "model-00002-of-00002.safetensors")
    weight_map = {n: "model-00001-of-00002.safetensors" for n in first}
    weight_map.update({n: "model-00002-of-00002.safetensors" for n in second})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shard = re.escape(str(folder / "model-00002-of-00002.safetensors"))
    _refused(
        folder,
        shard + rf": the index lists tensor '{re.escape(second[0])}' in this shard, but the "
        r"shard does not hold it",
    )
    # with the tensor restored, the same sharded folder loads
    save_file({n: tensors[n] for n in second}, folder / "model-00002-of-00002.safetensors")
    model, _ = atenea.load_pretrained(folder)
    assert torch.equal(model.final_norm.weight, tensors["ln_f.weight"])


def test_invalid_shard_index(folder):
    (folder / "model.safetensors.index.json").write_text("{not json")
    _refused(folder, r"model\.safetensors\.index\.json: not a valid shard index")


def test_missing_config(folder):
    (folder / "config.json").unlink()
    _refused(folder, re.escape(str(folder / "config.json")) + ": missing")


def test_invalid_config_json(folder):
    (folder / "config.json").write_text("[1, 2")
    _refused(folder, r"config\.json: invalid JSON")


def test_path_that_does_not_exist(tmp_path):
    _refused(tmp_path / "nowhere", re.escape(str(tmp_path / "nowhere")) + ": no such folder")


def test_a_file_instead_of_a_folder(folder):
    _refused(folder / "config.json", "expected a checkpoint folder, got a file")


def test_empty_folder_with_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _refused(tmp_path, r"no model\.safetensors or model\.safetensors\.index\.json")


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=true"),
        (dict(activation_function="quick_gelu"), "activation_function='quick_gelu'"),
    ],
)
def test_unsupported_gpt2_options(folder, edit, pattern):
    _edit_config(folder, lambda c: c.update(edit))
    _refused(folder, "is not supported")
    _refused(folder, pattern)


def test_unknown_native_class_and_fields(tmp_path):
    from atenea.models import EncoderDecoderConfig, EncoderDecoderModel

    save_pretrained(
        EncoderDecoderModel(EncoderDecoderConfig.from_name("transformer-tiny")), tmp_path
    )
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "atenea_class": "Mystery"}))
    _refused(tmp_path, "unknown atenea_class 'Mystery'")
    config["atenea_config"]["depth"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    _refused(tmp_path, r"unknown config fields \['depth'\]")


def test_unsupported_bert_and_llama_options(tmp_path):
    from atenea.models import EncoderConfig, EncoderModel

    save_pretrained(
        EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB)), tmp_path / "bert"
    )
    _edit_config(tmp_path / "bert", lambda c: c.update(position_embedding_type="relative_key"))
    _refused(tmp_path / "bert", "position_embedding_type='relative_key'; atenea reads BERT")
    save_pretrained(
        DecoderModel(DecoderConfig.from_name("llama-tiny", vocab_size=VOCAB)), tmp_path / "llama"
    )
    _edit_config(tmp_path / "llama", lambda c: c.update(hidden_act="gelu"))
    _refused(tmp_path / "llama", "Llama hidden_act='gelu' is not supported")


@pytest.mark.parametrize(
    "build, pattern",
    [
        # the tensors look like BertForMaskedLM's, the attention is causal
        (lambda c: transformers.BertLMHeadModel(c(is_decoder=True)), "is_decoder=true"),
        # a classifier per token: the tensors look like a text classifier's
        (lambda c: transformers.BertForTokenClassification(c(num_labels=5)),
         "architecture BertForTokenClassification is not supported"),
        (lambda c: transformers.BertForMaskedLM(c(tie_word_embeddings=False)),
         "tie_word_embeddings=false is not supported for BERT"),
    ],
)  # fmt: skip
def test_bert_checkpoints_atenea_would_build_wrongly_are_refused(build, pattern, tmp_path):
    """Their tensors match a model atenea reads, their config says it computes otherwise:
    refused in one line, not loaded as a model with other outputs."""
    build(bert_config).save_pretrained(tmp_path)
    _refused(tmp_path, pattern)
