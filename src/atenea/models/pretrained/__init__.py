"""Pretrained checkpoints: folders atenea and Hugging Face ``transformers`` both read.

    model, tokenizer = load_pretrained("path/to/folder")   # or None / "minilm": the bundled one
    save_pretrained(model, "out", tokenizer)                # format="auto" | "hf" | "atenea"

Where things are: ``folder.py`` reads and writes whole folders (and atenea's own format);
``safetensors.py`` reads and writes the files; ``rules.py`` renames tensors between Hugging
Face's names and atenea's; ``bert.py``, ``gpt2.py``, ``llama.py`` hold one family each (config
translation both ways, renaming rules, tensors to ignore). A new family is one more module
like those, added to ``folder.FAMILIES``.
"""

from atenea.models.pretrained.folder import load_pretrained, load_weights, save_pretrained
from atenea.models.pretrained.safetensors import (
    CheckpointError,
    read_json_object,
    read_tensor_file,
    read_tensor_folder,
)

__all__ = [
    "CheckpointError",
    "load_pretrained",
    "load_weights",
    "read_json_object",
    "read_tensor_file",
    "read_tensor_folder",
    "save_pretrained",
]
