"""BERT (MiniLM included): a post-norm encoder with learned positions and segment embeddings.

Mapping: ``BertModel`` <-> ``EncoderModel``, ``BertForMaskedLM`` <-> ``EncoderForMaskedLM``,
``BertForSequenceClassification`` <-> ``EncoderForSequenceClassification`` (pooled [CLS]).
Names: ``embeddings.*`` -> the embeddings and ``embedding_norm``; ``encoder.layer.{i}.attention
.self.{query,key,value}`` -> ``layers.{i}.attention.{q,k,v}_proj``; ``attention.output.dense``
-> ``o_proj`` and its LayerNorm -> ``attention_norm``; ``intermediate.dense`` / ``output.dense``
-> ``feed_forward.up`` / ``down`` and the last LayerNorm -> ``ffn_norm``; ``pooler.dense`` ->
``pooler``. The task models put the encoder under ``bert.`` (ours under ``encoder.``); the MLM
head's ``cls.predictions.transform`` -> ``mlm_head``, the classifier -> ``head.classifier``.
Ignored when reading: the ``position_ids`` buffer and the decoder tied to the embeddings.

An encoder has a BERT equivalent only when it is post-norm, with learned positions, segment
embeddings and a BERT activation; a classifier, only when it pools [CLS] through the pooler.
"""

from __future__ import annotations

from torch import nn

from atenea.models.config import EncoderConfig
from atenea.models.encoder import (
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
)
from atenea.models.pretrained.rules import (
    OUR_ACTIVATIONS,
    Family,
    LoadPlan,
    Rule,
    SavePlan,
    activation_from_hf,
)
from atenea.models.pretrained.safetensors import CheckpointError

ENCODER = [
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
MLM_HEAD = [
    Rule("cls.predictions.transform.dense.{p}", "mlm_head.dense.{p}"),
    Rule("cls.predictions.transform.LayerNorm.{p}", "mlm_head.norm.{p}"),
    Rule("cls.predictions.bias", "mlm_head.bias"),
]
CLASSIFIER = [Rule("classifier.{p}", "head.classifier.{p}")]
IGNORE = (
    r"(bert\.)?embeddings\.position_ids",  # a buffer of 0..511
    r"cls\.predictions\.decoder\.(weight|bias)",  # tied to the embeddings / the bias above
)
ARCHITECTURES = {
    EncoderModel: "BertModel",
    EncoderForMaskedLM: "BertForMaskedLM",
    EncoderForSequenceClassification: "BertForSequenceClassification",
}
# the architectures whose ``classifier`` labels a whole text (token classifiers and multiple
# choice have a ``classifier`` too)
CLASSIFIERS = ("BertForSequenceClassification",)


def rules_for(model_class: type[nn.Module], hf_prefix: str) -> list[Rule]:
    """The rules of one model class; ``hf_prefix``: ``"bert."`` when the checkpoint nests the
    encoder under it (task models; some bare ``BertModel`` files too), else ``""``."""
    if model_class is EncoderModel:
        return [rule.prefixed(hf_prefix, "") for rule in ENCODER]
    encoder = [rule.prefixed(hf_prefix, "encoder.") for rule in ENCODER]
    return encoder + (MLM_HEAD if model_class is EncoderForMaskedLM else CLASSIFIER)


def _refuse_what_we_cannot_compute(hf: dict, names: set[str]) -> None:
    """A ``CheckpointError`` for BERT options whose model atenea would build wrongly: the
    tensors alone do not tell them from the ones it reads."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"config.json: position_embedding_type={hf['position_embedding_type']!r}; atenea "
            f"reads BERT checkpoints with absolute positions"
        )
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise CheckpointError(
            "config.json: is_decoder=true (a causal BERT such as BertLMHeadModel) is not "
            "supported; atenea's BERT encoder attends both ways"
        )
    if hf.get("tie_word_embeddings", True) is False and "cls.predictions.decoder.weight" in names:
        raise CheckpointError(
            "config.json: tie_word_embeddings=false is not supported for BERT; atenea's masked "
            "LM head predicts through the token embeddings"
        )
    if any(n.startswith("classifier.") for n in names):
        other = [a for a in hf.get("architectures") or [] if a not in CLASSIFIERS]
        if other:
            raise CheckpointError(
                f"config.json: architecture {other[0]} is not supported; of BERT's "
                f"classifiers atenea reads BertForSequenceClassification (one label per text)"
            )


def plan_load(hf: dict, names: set[str]) -> LoadPlan:
    """The model class comes from the tensors (an MLM head, a classifier, or neither)."""
    _refuse_what_we_cannot_compute(hf, names)
    config = EncoderConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], ffn_hidden=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        activation=activation_from_hf(hf, "hidden_act"),
        norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pooler=any(n.endswith("pooler.dense.weight") for n in names),
        pad_token_id=hf.get("pad_token_id") or 0,
    )  # fmt: skip
    hf_prefix = "bert." if any(n.startswith("bert.") for n in names) else ""
    kwargs = {}
    if any(n.startswith("cls.predictions") for n in names):
        model_class = EncoderForMaskedLM
    elif any(n.startswith("classifier.") for n in names):
        model_class = EncoderForSequenceClassification
        kwargs["num_labels"] = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
        names = {int(i): str(label) for i, label in (hf.get("id2label") or {}).items()}
        # HF's placeholder names (LABEL_0, ...) mean "no names", as a config without them
        unnamed = all(label == f"LABEL_{i}" for i, label in names.items())
        config.id2label = None if unnamed else names
    else:
        model_class = EncoderModel
    return LoadPlan(model_class, config, kwargs, rules_for(model_class, hf_prefix))


def has_equivalent(model: nn.Module) -> bool:
    """Whether ``transformers``' BERT computes what ``model`` computes."""
    if type(model) not in ARCHITECTURES:
        return False
    c: EncoderConfig = model.config
    if c.positions != "learned" or c.norm_position != "post" or c.activation not in OUR_ACTIVATIONS:
        return False
    if not c.type_vocab_size:  # BERT always adds a segment embedding
        return False
    if isinstance(model, EncoderForSequenceClassification):
        return model.head.pooling == "cls" and c.pooler  # BERT classifies the pooled [CLS]
    return True


def plan_save(model: nn.Module) -> SavePlan | None:
    if not has_equivalent(model):
        return None
    c: EncoderConfig = model.config
    hf = dict(
        model_type="bert", architectures=[ARCHITECTURES[type(model)]], vocab_size=c.vocab_size,
        hidden_size=c.dim, num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        intermediate_size=c.ffn_hidden, max_position_embeddings=c.max_positions,
        type_vocab_size=c.type_vocab_size, hidden_act=OUR_ACTIVATIONS[c.activation],
        layer_norm_eps=c.norm_eps, hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attention_dropout, pad_token_id=c.pad_token_id,
        position_embedding_type="absolute",
    )  # fmt: skip
    if isinstance(model, EncoderForSequenceClassification):
        names = c.id2label or {}  # the label names of a trained classifier, as HF keeps them
        hf["id2label"] = {str(i): names.get(i, f"LABEL_{i}") for i in range(model.num_labels)}
        hf["label2id"] = {label: int(i) for i, label in hf["id2label"].items()}
    # transformers' task models nest the encoder under "bert."; BertModel has it at the top
    hf_prefix = "" if type(model) is EncoderModel else "bert."
    return SavePlan(hf, rules_for(type(model), hf_prefix))


FAMILY = Family("bert", plan_load, plan_save, IGNORE)
