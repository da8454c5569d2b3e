"""The folders retrieval writes, and how to recognise them: a passage index
(``PassageIndex.save``) and a kNN datastore (``Datastore.save``).

Each holds a JSON file that starts with ``{"format": "<name>"``; reading its head is enough, and
cheap (an index.json holds every passage). The corpus reader leaves such folders out (a folder
re-indexed with its index inside it would read the old index.json as text), and the CLI lets
``atenea index`` write again over an index it wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

EMBEDDINGS_FILE, INDEX_FILE = "embeddings.safetensors", "index.json"
INDEX_FORMAT = "atenea-passage-index/1"
DATASTORE_FILE, DATASTORE_INFO_FILE = "datastore.safetensors", "datastore.json"
DATASTORE_FORMAT = "atenea-knn-datastore/1"


def starts_with_format(path: Path, format_name: str) -> bool:
    """Whether the JSON file at ``path`` begins with ``{"format": "<format_name>"``."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            head = handle.read(256)
    except (OSError, UnicodeDecodeError):
        return False
    return re.match(r'\{\s*"format":\s*' + re.escape(f'"{format_name}"'), head) is not None


def is_index_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an ``index.json`` that ``PassageIndex.save`` wrote."""
    return starts_with_format(Path(folder) / INDEX_FILE, INDEX_FORMAT)


def is_datastore_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a ``datastore.json`` that ``Datastore.save`` wrote."""
    return starts_with_format(Path(folder) / DATASTORE_INFO_FILE, DATASTORE_FORMAT)


def written_by_atenea(folder: Path) -> bool:
    """Whether ``folder`` is a passage index or a kNN datastore: never a corpus."""
    return is_index_folder(folder) or is_datastore_folder(folder)
