"""GPT-2: a pre-norm decoder with learned positions, LayerNorm and biases everywhere.

Mapping: ``GPT2LMHeadModel`` / ``GPT2Model`` <-> ``DecoderModel`` with ``positions="learned"``,
``norm="layernorm"``, ``fused_qkv=True``, tied embeddings unless ``tie_word_embeddings`` is
false (then ``lm_head`` -> ``lm_head``). Names: ``wte`` / ``wpe`` -> the token
and position embeddings; ``h.{i}.ln_1`` / ``ln_2`` -> ``attention_norm`` / ``ffn_norm``;
``h.{i}.attn.c_attn`` (q, k and v fused) -> ``attention.qkv_proj``, ``attn.c_proj`` ->
``attention.o_proj``; ``mlp.c_fc`` / ``mlp.c_proj`` -> ``feed_forward.up`` / ``down``; ``ln_f``
-> ``final_norm``. GPT-2's ``Conv1D`` stores its matrices as ``(in, out)``: those four are
transposed. Checkpoints of ``GPT2LMHeadModel`` prefix the names with ``transformer.``.
Ignored when reading: the old causal-mask buffers and, when tied, ``lm_head.weight`` (a copy
of ``wte``).
"""

from __future__ import annotations

from torch import nn

from atenea.models.config import DecoderConfig
from atenea.models.decoder import DecoderModel
from atenea.models.pretrained.rules import (
    OUR_ACTIVATIONS,
    Family,
    LoadPlan,
    Rule,
    SavePlan,
    activation_from_hf,
)
from atenea.models.pretrained.safetensors import CheckpointError

RULES = [
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
IGNORE = (
    r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias",  # old causal-mask buffers
    r"lm_head\.weight",  # tied to wte (an untied head has a rule, which wins)
)
HEAD = Rule("lm_head.weight", "lm_head.weight")  # untied: the head's own matrix
UNSUPPORTED = ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention")


def plan_load(hf: dict, names: set[str]) -> LoadPlan:
    for flag in UNSUPPORTED:
        if hf.get(flag):
            raise CheckpointError(f"config.json: GPT-2 option {flag}=true is not supported")
    if hf.get("scale_attn_weights", True) is False:
        raise CheckpointError("config.json: GPT-2 option scale_attn_weights=false is not supported")
    dim = hf["n_embd"]
    config = DecoderConfig(
        vocab_size=hf["vocab_size"], dim=dim, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        ffn_hidden=hf.get("n_inner") or 4 * dim, max_positions=hf.get("n_positions", 1024),
        positions="learned", norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation=activation_from_hf(hf, "activation_function"), bias=True, fused_qkv=True,
        tie_embeddings=_tied(hf, names), dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"), pad_token_id=hf.get("pad_token_id"),
    )  # fmt: skip
    prefix = "transformer." if any(n.startswith("transformer.") for n in names) else ""
    rules = [rule.prefixed(prefix, "") for rule in RULES]
    return LoadPlan(DecoderModel, config, {}, rules + ([] if config.tie_embeddings else [HEAD]))


def _tied(hf: dict, names: set[str]) -> bool:
    """Whether the output layer is the token embedding: transformers ties them unless
    ``tie_word_embeddings`` is false, and a file without ``lm_head.weight`` (``GPT2Model``)
    has no head of its own to read."""
    return bool(hf.get("tie_word_embeddings", True)) or "lm_head.weight" not in names


def has_equivalent(model: nn.Module) -> bool:
    """Whether ``transformers``' GPT-2 computes what ``model`` computes."""
    if not isinstance(model, DecoderModel):
        return False
    c: DecoderConfig = model.config
    return (
        c.positions == "learned" and c.norm == "layernorm" and c.bias and c.fused_qkv
        and c.activation in OUR_ACTIVATIONS
        and c.num_kv_heads in (None, c.num_heads)
        and c.head_dim in (None, c.dim // c.num_heads)
    )  # fmt: skip


def plan_save(model: nn.Module) -> SavePlan | None:
    """Written as ``GPT2LMHeadModel`` without the ``transformer.`` prefix (transformers reads
    both)."""
    if not has_equivalent(model):
        return None
    c: DecoderConfig = model.config
    hf = dict(
        model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=c.vocab_size,
        n_embd=c.dim, n_layer=c.num_layers, n_head=c.num_heads, n_inner=c.ffn_hidden,
        n_positions=c.max_positions, layer_norm_epsilon=c.norm_eps,
        activation_function=OUR_ACTIVATIONS[c.activation], resid_pdrop=c.dropout,
        embd_pdrop=c.dropout, attn_pdrop=c.attention_dropout, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        tie_word_embeddings=c.tie_embeddings,
    )  # fmt: skip
    return SavePlan(hf, list(RULES) + ([] if c.tie_embeddings else [HEAD]))


FAMILY = Family("gpt2", plan_load, plan_save, IGNORE)
