"""Hugging Face checkpoints of BERT, GPT-2 and Llama, in atenea's own modules.

Each family is a table of renaming rules (Hugging Face name <-> atenea name, GPT-2's ``Conv1D``
weights transposed) and a config translation both ways. Reading and writing use the same
tables, so a loaded model saves back to a folder ``transformers`` can load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from atenea.models.config import DecoderConfig, EncoderConfig
from atenea.models.decoder import DecoderModel
from atenea.models.encoder import (
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
)
from atenea.models.safetensors_io import CheckpointError


@dataclass(frozen=True)
class Rule:
    """``hf`` <-> ``ours``; ``{i}`` is a layer index, ``{p}`` weight or bias."""

    hf: str
    ours: str
    transpose: bool = False

    def prefixed(self, hf_prefix: str, our_prefix: str) -> Rule:
        return Rule(hf_prefix + self.hf, our_prefix + self.ours, self.transpose)


_FIELDS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>weight|bias)"}


def _regex(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", "{i}").replace(r"\{p\}", "{p}")
    return re.compile(escaped.format(**_FIELDS))


def rename(names, rules: list[Rule], ignore: list[str], to_ours: bool):
    """``{old name: (new name, transpose)}`` for every name; raises on names no rule knows."""
    compiled = [(_regex(r.hf if to_ours else r.ours), r) for r in rules]
    ignored = [re.compile(pattern) for pattern in ignore] if to_ours else []
    renamed, unknown = {}, []
    for name in names:
        if any(pattern.fullmatch(name) for pattern in ignored):
            continue
        for pattern, rule in compiled:
            match = pattern.fullmatch(name)
            if match:
                target = rule.ours if to_ours else rule.hf
                renamed[name] = (target.format(**match.groupdict()), rule.transpose)
                break
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(f"'{n}'" for n in sorted(unknown)[:6])
        more = f" and {len(unknown) - 6} more" if len(unknown) > 6 else ""
        where = "the checkpoint" if to_ours else "the model"
        raise CheckpointError(f"unexpected tensors in {where}: {shown}{more}")
    return renamed


# ---------------------------------------------------------------------------------------------
# BERT (and MiniLM): post-norm encoder
# ---------------------------------------------------------------------------------------------

BERT_ENCODER = [
    Rule("embeddings.word_embeddings.weight", "token_embedding.weight"),
    Rule("embeddings.position_embeddings.weight", "position_embedding.table.weight"),
    Rule("embeddings.token_type_embeddings.weight", "segment_embedding.weight"),
    Rule("embeddings.LayerNorm.{p}", "embedding_norm.{p}"),
    Rule("encoder.layer.{i}.attention.self.query.{p}", "layers.{i}.attention.q_proj.{p}"),
    Rule("encoder.layer.{i}.attention.self.key.{p}", "layers.{i}.attention.k_proj.{p}"),
    Rule("encoder.layer.{i}.attention.self.value.{p}", "layers.{i}.attention.v_proj.{p}"),
    Rule("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attention.o_proj.{p}"),
    Rule("encoder.layer.{i}.attention.output.LayerNorm.{p}", "layers.{i}.attention_norm.{p}"),
    Rule("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.feed_forward.up.{p}"),
    Rule("encoder.layer.{i}.output.dense.{p}", "layers.{i}.feed_forward.down.{p}"),
    Rule("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.ffn_norm.{p}"),
    Rule("pooler.dense.{p}", "pooler.{p}"),
]
BERT_MLM_HEAD = [
    Rule("cls.predictions.transform.dense.{p}", "mlm_head.dense.{p}"),
    Rule("cls.predictions.transform.LayerNorm.{p}", "mlm_head.norm.{p}"),
    Rule("cls.predictions.bias", "mlm_head.bias"),
]
BERT_IGNORE = [
    r"(bert\.)?embeddings\.position_ids",  # a buffer of 0..511
    r"cls\.predictions\.decoder\.(weight|bias)",  # tied to the embeddings / the bias above
]
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "relu": "relu", "silu": "silu"}  # fmt: skip
OUR_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def _activation(hf: dict, key: str) -> str:
    name = hf.get(key, "gelu")
    if name not in HF_ACTIVATIONS:
        raise CheckpointError(f"config.json: activation {key}={name!r} is not supported")
    return HF_ACTIVATIONS[name]


def bert_build(hf: dict, names: set[str]):
    """Model class, config and renaming rules for a BERT checkpoint with these tensors."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"config.json: position_embedding_type={hf['position_embedding_type']!r}; atenea "
            f"reads BERT checkpoints with absolute positions"
        )
    prefixed = any(n.startswith("bert.") for n in names)
    config = EncoderConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], ffn_hidden=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), activation=_activation(hf, "hidden_act"),
        norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pooler=any(n.endswith("pooler.dense.weight") for n in names),
        pad_token_id=hf.get("pad_token_id") or 0,
    )  # fmt: skip
    hf_prefix = "bert." if prefixed else ""
    if any(n.startswith("cls.predictions") for n in names):
        rules = [r.prefixed(hf_prefix, "encoder.") for r in BERT_ENCODER] + BERT_MLM_HEAD
        return EncoderForMaskedLM, config, {}, rules
    if any(n.startswith("classifier.") for n in names):
        num_labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
        rules = [r.prefixed(hf_prefix, "encoder.") for r in BERT_ENCODER]
        rules.append(Rule("classifier.{p}", "head.classifier.{p}"))
        return EncoderForSequenceClassification, config, {"num_labels": num_labels}, rules
    return EncoderModel, config, {}, [r.prefixed(hf_prefix, "") for r in BERT_ENCODER]


def bert_config(model: nn.Module) -> dict:
    c: EncoderConfig = model.config
    if c.positions != "learned" or c.norm_position != "post" or c.activation not in OUR_ACTIVATIONS:
        raise CheckpointError("this encoder has no BERT equivalent (positions / norm / activation)")
    if not c.type_vocab_size:  # BERT always adds a segment embedding
        raise CheckpointError("this encoder has no BERT equivalent (no segment embedding)")
    if isinstance(model, EncoderForSequenceClassification) and (
        model.head.pooling != "cls" or not c.pooler
    ):  # BERT classifies the pooled [CLS] state
        raise CheckpointError("this classifier has no BERT equivalent (pooling)")
    architecture = {
        EncoderModel: "BertModel",
        EncoderForMaskedLM: "BertForMaskedLM",
        EncoderForSequenceClassification: "BertForSequenceClassification",
    }[type(model)]
    hf = dict(
        model_type="bert", architectures=[architecture], vocab_size=c.vocab_size,
        hidden_size=c.dim, num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        intermediate_size=c.ffn_hidden, max_position_embeddings=c.max_positions,
        type_vocab_size=c.type_vocab_size, hidden_act=OUR_ACTIVATIONS[c.activation],
        layer_norm_eps=c.norm_eps, hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attention_dropout, pad_token_id=c.pad_token_id,
        position_embedding_type="absolute",
    )  # fmt: skip
    if isinstance(model, EncoderForSequenceClassification):
        hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
    return hf


def bert_rules_for(model: nn.Module) -> list[Rule]:
    if isinstance(model, EncoderForMaskedLM):
        return [r.prefixed("bert.", "encoder.") for r in BERT_ENCODER] + BERT_MLM_HEAD
    if isinstance(model, EncoderForSequenceClassification):
        rules = [r.prefixed("bert.", "encoder.") for r in BERT_ENCODER]
        return rules + [Rule("classifier.{p}", "head.classifier.{p}")]
    return list(BERT_ENCODER)


# ---------------------------------------------------------------------------------------------
# GPT-2: learned positions, LayerNorm, fused q/k/v in Conv1D layers (weights stored transposed)
# ---------------------------------------------------------------------------------------------

GPT2 = [
    Rule("wte.weight", "token_embedding.weight"),
    Rule("wpe.weight", "position_embedding.table.weight"),
    Rule("h.{i}.ln_1.{p}", "layers.{i}.attention_norm.{p}"),
    Rule("h.{i}.attn.c_attn.weight", "layers.{i}.attention.qkv_proj.weight", transpose=True),
    Rule("h.{i}.attn.c_attn.bias", "layers.{i}.attention.qkv_proj.bias"),
    Rule("h.{i}.attn.c_proj.weight", "layers.{i}.attention.o_proj.weight", transpose=True),
    Rule("h.{i}.attn.c_proj.bias", "layers.{i}.attention.o_proj.bias"),
    Rule("h.{i}.ln_2.{p}", "layers.{i}.ffn_norm.{p}"),
    Rule("h.{i}.mlp.c_fc.weight", "layers.{i}.feed_forward.up.weight", transpose=True),
    Rule("h.{i}.mlp.c_fc.bias", "layers.{i}.feed_forward.up.bias"),
    Rule("h.{i}.mlp.c_proj.weight", "layers.{i}.feed_forward.down.weight", transpose=True),
    Rule("h.{i}.mlp.c_proj.bias", "layers.{i}.feed_forward.down.bias"),
    Rule("ln_f.{p}", "final_norm.{p}"),
]
GPT2_IGNORE = [
    r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias",  # old causal-mask buffers
    r"lm_head\.weight",  # tied to wte
]


def gpt2_build(hf: dict, names: set[str]):
    for flag in (
        "scale_attn_by_inverse_layer_idx",
        "reorder_and_upcast_attn",
        "add_cross_attention",
    ):
        if hf.get(flag):
            raise CheckpointError(f"config.json: GPT-2 option {flag}=true is not supported")
    if hf.get("scale_attn_weights", True) is False:
        raise CheckpointError("config.json: GPT-2 option scale_attn_weights=false is not supported")
    dim = hf["n_embd"]
    config = DecoderConfig(
        vocab_size=hf["vocab_size"], dim=dim, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        ffn_hidden=hf.get("n_inner") or 4 * dim, max_positions=hf.get("n_positions", 1024),
        positions="learned", norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation=_activation(hf, "activation_function"), bias=True, fused_qkv=True,
        tie_embeddings=True, dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"), pad_token_id=hf.get("pad_token_id"),
    )  # fmt: skip
    prefix = "transformer." if any(n.startswith("transformer.") for n in names) else ""
    return DecoderModel, config, {}, [r.prefixed(prefix, "") for r in GPT2]


def _is_gpt2(c: DecoderConfig) -> bool:
    return (
        c.positions == "learned" and c.norm == "layernorm" and c.bias and c.fused_qkv
        and c.tie_embeddings and c.activation in OUR_ACTIVATIONS
        and c.num_kv_heads in (None, c.num_heads)
        and c.head_dim in (None, c.dim // c.num_heads)
    )  # fmt: skip


def gpt2_config(model: DecoderModel) -> dict:
    c = model.config
    return dict(
        model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=c.vocab_size,
        n_embd=c.dim, n_layer=c.num_layers, n_head=c.num_heads, n_inner=c.ffn_hidden,
        n_positions=c.max_positions, layer_norm_epsilon=c.norm_eps,
        activation_function=OUR_ACTIVATIONS[c.activation], resid_pdrop=c.dropout,
        embd_pdrop=c.dropout, attn_pdrop=c.attention_dropout, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Llama: rotary positions, RMSNorm, SwiGLU, grouped-query attention, separate q/k/v/o
# ---------------------------------------------------------------------------------------------

LLAMA = [
    Rule("model.embed_tokens.weight", "token_embedding.weight"),
    Rule("model.layers.{i}.input_layernorm.weight", "layers.{i}.attention_norm.weight"),
    Rule("model.layers.{i}.self_attn.q_proj.{p}", "layers.{i}.attention.q_proj.{p}"),
    Rule("model.layers.{i}.self_attn.k_proj.{p}", "layers.{i}.attention.k_proj.{p}"),
    Rule("model.layers.{i}.self_attn.v_proj.{p}", "layers.{i}.attention.v_proj.{p}"),
    Rule("model.layers.{i}.self_attn.o_proj.{p}", "layers.{i}.attention.o_proj.{p}"),
    Rule("model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.ffn_norm.weight"),
    Rule("model.layers.{i}.mlp.gate_proj.{p}", "layers.{i}.feed_forward.gate.{p}"),
    Rule("model.layers.{i}.mlp.up_proj.{p}", "layers.{i}.feed_forward.up.{p}"),
    Rule("model.layers.{i}.mlp.down_proj.{p}", "layers.{i}.feed_forward.down.{p}"),
    Rule("model.norm.weight", "final_norm.weight"),
    Rule("lm_head.weight", "lm_head.weight"),
]
LLAMA_IGNORE = [r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"]


def _rope(hf: dict) -> tuple[float, dict | None]:
    """(theta, scaling) from ``rope_parameters`` (transformers >= 5) or ``rope_theta`` /
    ``rope_scaling`` (older files)."""
    parameters = dict(hf.get("rope_parameters") or {})
    theta = parameters.pop("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = parameters or hf.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        scaling = None
    return float(theta), scaling


def llama_build(hf: dict, names: set[str]):
    if hf.get("attention_bias") != hf.get("mlp_bias", hf.get("attention_bias")):
        raise CheckpointError("config.json: attention_bias and mlp_bias differ; not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(
            f"config.json: Llama hidden_act={hf['hidden_act']!r} is not supported"
        )
    theta, scaling = _rope(hf)
    heads = hf["num_attention_heads"]
    config = DecoderConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        ffn_hidden=hf["intermediate_size"], max_positions=hf.get("max_position_embeddings", 2048),
        positions="rotary", rope_theta=theta, rope_layout="half", rope_scaling=scaling,
        norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), activation="swiglu",
        bias=bool(hf.get("attention_bias", False)), fused_qkv=False,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        dropout=0.0, attention_dropout=hf.get("attention_dropout", 0.0),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=_first(hf.get("eos_token_id")),
        pad_token_id=hf.get("pad_token_id"),
    )  # fmt: skip
    rules = [r for r in LLAMA if not (config.tie_embeddings and r.ours == "lm_head.weight")]
    return DecoderModel, config, {}, rules


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _is_llama(c: DecoderConfig) -> bool:
    return (
        c.positions == "rotary" and c.rope_layout == "half" and c.norm == "rmsnorm"
        and c.activation == "swiglu" and not c.fused_qkv
    )  # fmt: skip


def llama_config(model: DecoderModel) -> dict:
    c = model.config
    rope = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        rope = {**c.rope_scaling, "rope_theta": c.rope_theta}
    return dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=c.vocab_size,
        hidden_size=c.dim, num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads or c.num_heads, head_dim=c.resolved_head_dim,
        intermediate_size=c.ffn_hidden, max_position_embeddings=c.max_positions,
        rms_norm_eps=c.norm_eps, hidden_act="silu", attention_bias=c.bias, mlp_bias=c.bias,
        tie_word_embeddings=c.tie_embeddings, attention_dropout=c.attention_dropout,
        rope_theta=c.rope_theta, rope_scaling=c.rope_scaling, rope_parameters=rope,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )  # fmt: skip


def llama_rules_for(model: DecoderModel) -> list[Rule]:
    return [r for r in LLAMA if not (model.config.tie_embeddings and r.ours == "lm_head.weight")]


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------

FAMILIES = {
    "bert": (bert_build, BERT_IGNORE),
    "gpt2": (gpt2_build, GPT2_IGNORE),
    "llama": (llama_build, LLAMA_IGNORE),
}


def hf_format_of(model: nn.Module):
    """``(config dict, rules)`` to save ``model`` as a Hugging Face checkpoint, or None when its
    configuration has no Hugging Face equivalent (then atenea's own format is used)."""
    try:
        if isinstance(model, (EncoderModel, EncoderForMaskedLM, EncoderForSequenceClassification)):
            return bert_config(model), bert_rules_for(model)
        if isinstance(model, DecoderModel):
            if _is_gpt2(model.config):
                return gpt2_config(model), [r for r in GPT2]
            if _is_llama(model.config):
                return llama_config(model), llama_rules_for(model)
    except CheckpointError:
        return None
    return None


def convert_to_ours(tensors: dict[str, torch.Tensor], rules, ignore) -> dict[str, torch.Tensor]:
    renamed = rename(tensors, rules, ignore, to_ours=True)
    return {
        new: (tensors[old].t() if transpose else tensors[old])
        for old, (new, transpose) in renamed.items()
    }


def convert_to_hf(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    renamed = rename(state, rules, [], to_ours=False)
    return {
        new: (state[old].t() if transpose else state[old])
        for old, (new, transpose) in renamed.items()
    }
