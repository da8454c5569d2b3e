"""Llama: a pre-norm decoder with rotary positions, RMSNorm, SwiGLU and grouped-query attention.

Mapping: ``LlamaForCausalLM`` <-> ``DecoderModel`` with ``positions="rotary"`` (the "half"
layout: element i of a head turns with element i + D/2), ``norm="rmsnorm"``,
``activation="swiglu"``, separate q / k / v. Names: ``model.embed_tokens`` ->
``token_embedding``; ``model.layers.{i}.input_layernorm`` / ``post_attention_layernorm`` ->
``attention_norm`` / ``ffn_norm``; ``self_attn.{q,k,v,o}_proj`` -> ``attention.{q,k,v,o}_proj``;
``mlp.{gate,up,down}_proj`` -> ``feed_forward.{gate,up,down}``; ``model.norm`` ->
``final_norm``; ``lm_head`` -> ``lm_head`` unless the embeddings are tied (then the checkpoint
has none). No matrix is transposed. Ignored when reading: the old ``rotary_emb.inv_freq``
buffers. Rotary theta and scaling (llama3, ...) come from ``rope_parameters`` (transformers
>= 5) or ``rope_theta`` / ``rope_scaling`` (older files); atenea writes both.
"""

from __future__ import annotations

from torch import nn

from atenea.models.config import DecoderConfig
from atenea.models.decoder import DecoderModel
from atenea.models.pretrained.rules import Family, LoadPlan, Rule, SavePlan
from atenea.models.pretrained.safetensors import CheckpointError

RULES = [
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
IGNORE = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)


def rules_for(tie_embeddings: bool) -> list[Rule]:
    """Tied embeddings: the output projection is the embedding, with no tensor of its own."""
    return [rule for rule in RULES if not (tie_embeddings and rule.ours == "lm_head.weight")]


def _rope(hf: dict) -> tuple[float, dict | None]:
    """(theta, scaling) from ``rope_parameters`` or ``rope_theta`` / ``rope_scaling``; the
    default rope type is no scaling."""
    parameters = dict(hf.get("rope_parameters") or {})
    theta = parameters.pop("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = parameters or hf.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        scaling = None
    return float(theta), scaling


def _first(value):
    """Llama 3 lists several end-of-sequence ids; atenea's config keeps the first."""
    return value[0] if isinstance(value, list) and value else value


def plan_load(hf: dict, names: set[str]) -> LoadPlan:
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
    return LoadPlan(DecoderModel, config, {}, rules_for(config.tie_embeddings))


def has_equivalent(model: nn.Module) -> bool:
    """Whether ``transformers``' Llama computes what ``model`` computes."""
    if not isinstance(model, DecoderModel):
        return False
    c: DecoderConfig = model.config
    return (
        c.positions == "rotary" and c.rope_layout == "half" and c.norm == "rmsnorm"
        and c.activation == "swiglu" and not c.fused_qkv
    )  # fmt: skip


def plan_save(model: nn.Module) -> SavePlan | None:
    if not has_equivalent(model):
        return None
    c: DecoderConfig = model.config
    rope = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        rope = {**c.rope_scaling, "rope_theta": c.rope_theta}
    hf = dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=c.vocab_size,
        hidden_size=c.dim, num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads or c.num_heads, head_dim=c.resolved_head_dim,
        intermediate_size=c.ffn_hidden, max_position_embeddings=c.max_positions,
        rms_norm_eps=c.norm_eps, hidden_act="silu", attention_bias=c.bias, mlp_bias=c.bias,
        tie_word_embeddings=c.tie_embeddings, attention_dropout=c.attention_dropout,
        rope_theta=c.rope_theta, rope_scaling=c.rope_scaling, rope_parameters=rope,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )  # fmt: skip
    return SavePlan(hf, rules_for(c.tie_embeddings))


FAMILY = Family("llama", plan_load, plan_save, IGNORE)
