"""ViT: Hugging Face's ``ViTModel`` / ``ViTForImageClassification`` folders.

Mapping: ``ViTModel`` <-> ``ViTModel``, ``ViTForImageClassification`` <-> ours (both nest the
encoder under ``vit.``). Names (as ``transformers`` writes them, also in 5.x):
``embeddings.patch_embeddings.projection`` -> ``patch_embedding`` (the strided convolution),
``embeddings.cls_token`` / ``position_embeddings`` -> ``cls_token`` / ``position_embedding``;
``encoder.layer.{i}.attention.attention.{query,key,value}`` -> ``layers.{i}.attention.{q,k,v}
_proj``, ``attention.output.dense`` -> ``o_proj``; ``layernorm_before`` / ``layernorm_after``
-> ``attention_norm`` / ``ffn_norm`` (pre-norm); ``intermediate.dense`` / ``output.dense`` ->
``feed_forward.up`` / ``down``; ``layernorm`` -> ``final_norm``; ``pooler.dense`` ->
``pooler``; ``classifier`` -> ``classifier``.

The image processor's ``preprocessor_config.json`` carries the normalisation (``image_mean``,
``image_std``) the model was trained with: read into ``ViTConfig``, written back beside it.
"""

from __future__ import annotations

from torch import nn

from atenea.models.pretrained.rules import (
    OUR_ACTIVATIONS,
    Family,
    LoadPlan,
    Rule,
    SavePlan,
    activation_from_hf,
)
from atenea.models.pretrained.safetensors import CheckpointError
from atenea.models.vit import ViTConfig, ViTForImageClassification, ViTModel

ENCODER = [
    Rule("embeddings.cls_token", "cls_token"),
    Rule("embeddings.position_embeddings", "position_embedding"),
    Rule("embeddings.patch_embeddings.projection.{p}", "patch_embedding.{p}"),
    Rule("encoder.layer.{i}.attention.attention.query.{p}", "layers.{i}.attention.q_proj.{p}"),
    Rule("encoder.layer.{i}.attention.attention.key.{p}", "layers.{i}.attention.k_proj.{p}"),
    Rule("encoder.layer.{i}.attention.attention.value.{p}", "layers.{i}.attention.v_proj.{p}"),
    Rule("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attention.o_proj.{p}"),
    Rule("encoder.layer.{i}.layernorm_before.{p}", "layers.{i}.attention_norm.{p}"),
    Rule("encoder.layer.{i}.layernorm_after.{p}", "layers.{i}.ffn_norm.{p}"),
    Rule("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.feed_forward.up.{p}"),
    Rule("encoder.layer.{i}.output.dense.{p}", "layers.{i}.feed_forward.down.{p}"),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.dense.{p}", "pooler.{p}"),
]
CLASSIFIER = [Rule("classifier.{p}", "classifier.{p}")]
ARCHITECTURES = {ViTModel: "ViTModel", ViTForImageClassification: "ViTForImageClassification"}
PREPROCESSOR = "preprocessor_config.json"


def rules_for(model_class: type[nn.Module], hf_prefix: str) -> list[Rule]:
    """``hf_prefix``: ``"vit."`` when the checkpoint nests the encoder under it."""
    if model_class is ViTModel:
        return [rule.prefixed(hf_prefix, "") for rule in ENCODER]
    return [rule.prefixed(hf_prefix, "vit.") for rule in ENCODER] + CLASSIFIER


def _side(value, name: str) -> int:
    """An int, or a square ``[n, n]`` (config.json allows both)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"config.json: {name}={value}; atenea reads square ViTs")
        value = value[0]
    return int(value)


def _config(hf: dict, channels: int, mean: list, std: list, names: set[str]) -> ViTConfig:
    """The ``ViTConfig`` of a config.json and the normalisation of its image processor."""
    return ViTConfig(
        image_size=_side(hf.get("image_size", 224), "image_size"),
        patch_size=_side(hf.get("patch_size", 16), "patch_size"), num_channels=channels,
        dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], ffn_hidden=hf["intermediate_size"],
        activation=activation_from_hf(hf, "hidden_act"), norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.0),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        pooler=any(n.endswith("pooler.dense.weight") for n in names),
        image_mean=mean, image_std=std,
    )  # fmt: skip


def plan_load(hf: dict, names: set[str]) -> LoadPlan:
    """The model class comes from the tensors (a classifier or not); the normalisation from
    ``hf["preprocessor"]`` (the folder's preprocessor_config.json, when it has one)."""
    if not hf.get("qkv_bias", True):
        raise CheckpointError("config.json: qkv_bias=false; atenea reads ViTs with q/k/v biases")
    channels = hf.get("num_channels", 3)
    processor = hf.get("preprocessor") or {}
    if processor.get("do_normalize", True):
        mean = processor.get("image_mean", [0.5] * channels)
        std = processor.get("image_std", [0.5] * channels)
    else:  # pixels go in as they are: a mean of 0 and a std of 1 change nothing
        mean, std = [0.0] * channels, [1.0] * channels
    # a single number is every channel's (transformers' image processor takes both)
    mean, std = ([v] * channels if isinstance(v, (int, float)) else list(v) for v in (mean, std))
    try:
        config = _config(hf, channels, mean, std, names)
    except CheckpointError:
        raise
    except ValueError as error:  # ViTConfig's own checks: the file's numbers, named as such
        raise CheckpointError(f"config.json: {error}") from None
    hf_prefix = "vit." if any(n.startswith("vit.") for n in names) else ""
    if any(n.startswith("classifier.") for n in names):
        id2label = hf.get("id2label") or {}
        count = len(id2label) or hf.get("num_labels", 2)
        labels = [str(id2label.get(str(i), i)) for i in range(count)]
        return LoadPlan(
            ViTForImageClassification, config, {"num_labels": count, "labels": labels},
            rules_for(ViTForImageClassification, hf_prefix),
        )  # fmt: skip
    return LoadPlan(ViTModel, config, {}, rules_for(ViTModel, hf_prefix))


def plan_save(model: nn.Module) -> SavePlan | None:
    if type(model) not in ARCHITECTURES:
        return None
    c: ViTConfig = model.config
    if c.activation not in OUR_ACTIVATIONS:
        return None
    hf = dict(
        model_type="vit", architectures=[ARCHITECTURES[type(model)]], image_size=c.image_size,
        patch_size=c.patch_size, num_channels=c.num_channels, hidden_size=c.dim,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        intermediate_size=c.ffn_hidden, hidden_act=OUR_ACTIVATIONS[c.activation],
        layer_norm_eps=c.norm_eps, hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attention_dropout, qkv_bias=True,
    )  # fmt: skip
    if isinstance(model, ViTForImageClassification):
        hf["id2label"] = {str(i): name for i, name in enumerate(model.labels)}
        hf["label2id"] = {name: i for i, name in enumerate(model.labels)}
    processor = dict(
        image_processor_type="ViTImageProcessor", do_resize=True, resample=2,
        size={"height": c.image_size, "width": c.image_size}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(c.image_mean),
        image_std=list(c.image_std),
    )  # fmt: skip
    prefix = "" if type(model) is ViTModel else "vit."
    return SavePlan(hf, rules_for(type(model), prefix), files={PREPROCESSOR: processor})


FAMILY = Family("vit", plan_load, plan_save)
