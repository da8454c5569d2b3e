"""The files of a checkpoint folder: safetensors tensors (never pickle) and JSON objects.

A folder holds its tensors in ``model.safetensors``, or in shards listed by
``model.safetensors.index.json``. Every failure is a ``CheckpointError`` naming the file (and
the tensor): a missing or truncated file, a corrupt header, an index pointing at a tensor its
shard lacks, a folder with only a pickled ``pytorch_model.bin``, a ``config.json`` that is not
a JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint folder or file atenea refuses to read (the message says which and why)."""


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


def read_tensor_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file, by name; a ``CheckpointError`` naming the file
    when it is missing, truncated or corrupt. (The one reader: shards go through it too.)"""
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
        return tensors
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as error:  # safetensors raises SafetensorError / OSError variants
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {error}"
        ) from None


def read_tensor_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``folder`` (one file or shards), by name."""
    folder = Path(folder)
    if (folder / INDEX).is_file():
        return _read_shards(folder)
    if (folder / SINGLE).is_file():
        return read_tensor_file(folder / SINGLE)
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    if pickles:
        raise CheckpointError(
            f"{folder}: holds only {', '.join(sorted(pickles))} (pickle files, which can run code "
            f"when loaded); atenea reads safetensors only. Convert once in a trusted "
            f"environment, e.g. transformers' model.save_pretrained(folder, "
            f"safe_serialization=True)"
        )
    raise CheckpointError(f"{folder}: no {SINGLE} or {INDEX} in this folder")


def _read_shards(folder: Path) -> dict[str, torch.Tensor]:
    """The shards named by the index, checked against it: each listed tensor must be in the
    shard the index names (a partial download otherwise loads with silent holes)."""
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder / INDEX}: not a valid shard index ({error})") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(read_tensor_file(folder / shard))
    for name, shard in weight_map.items():
        if name not in tensors:
            raise CheckpointError(
                f"{folder / shard}: the index lists tensor '{name}' in this shard, but the "
                f"shard does not hold it"
            )
    return tensors


def write_tensor_folder(folder: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``folder/model.safetensors`` (contiguous copies; tensors sharing memory must have
    been de-duplicated by the caller: safetensors refuses shared storage)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {name: t.detach().contiguous() for name, t in tensors.items()}
    save_file(plain, str(folder / SINGLE), metadata={"format": "pt"})
