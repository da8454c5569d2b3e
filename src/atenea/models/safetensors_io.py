"""Reading and writing tensors in safetensors files, never pickle.

A folder holds ``model.safetensors``, or shards listed in ``model.safetensors.index.json``.
Every failure names the file (and the tensor): a missing or truncated file, a corrupt header,
an index pointing at a tensor its shard lacks, a folder with only a pickled
``pytorch_model.bin``.
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


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file; a ``CheckpointError`` naming it when it is missing,
    truncated or corrupt."""
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


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``folder``, by name."""
    folder = Path(folder)
    if (folder / INDEX).is_file():
        try:
            index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{folder / INDEX}: not a valid shard index ({error})") from None
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_file(folder / shard))
        for name, shard in weight_map.items():
            if name not in tensors:
                raise CheckpointError(
                    f"{folder / shard}: the index lists tensor '{name}' in this shard, but the "
                    f"shard does not hold it"
                )
        return tensors
    if (folder / SINGLE).is_file():
        return read_file(folder / SINGLE)
    pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    if pickles:
        raise CheckpointError(
            f"{folder}: holds only {', '.join(sorted(pickles))} (pickle files, which can run code "
            f"when loaded); atenea reads safetensors only. Convert once in a trusted "
            f"environment, e.g. transformers' model.save_pretrained(folder, "
            f"safe_serialization=True)"
        )
    raise CheckpointError(f"{folder}: no {SINGLE} or {INDEX} in this folder")


def write_tensors(folder: str | Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """Write ``model.safetensors`` (contiguous copies; tensors sharing memory must have been
    de-duplicated by the caller)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {name: t.detach().contiguous() for name, t in tensors.items()}
    save_file(plain, str(folder / SINGLE), metadata={"format": "pt", **(metadata or {})})


def read_metadata(folder: str | Path) -> dict[str, str]:
    path = Path(folder) / SINGLE
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:
        return {}
