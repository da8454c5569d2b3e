"""Reading a corpus into passages: ``{"text", "source", ...}`` dicts, the unit an index holds.

    text files (.txt, .md, .rst, ...)   one passage per paragraph (blank-line separated), long
                                        paragraphs cut at MAX_WORDS words
    folders                             every text file inside, recursively, sorted by path
    .csv / .tsv / .jsonl                one passage per row, from its text column; the row's
                                        other columns kept beside it (a title, a topic)

MiniLM reads 256 tokens at most (about 190 English words): a longer passage would be embedded
from its start only, so paragraphs are cut before that.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

MAX_WORDS = 160
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
SKIPPED_SUFFIXES = {".safetensors", ".bin", ".pt", ".png", ".jpg", ".gz", ".zip", ".pdf"}


class CorpusError(ValueError):
    """A corpus that cannot be read into passages; the message names the file."""


def paragraphs(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Blank-line separated paragraphs of ``text``, whitespace collapsed, each cut into pieces
    of at most ``max_words`` words."""
    pieces = []
    for block in text.split("\n\n"):
        words = block.split()
        for start in range(0, len(words), max_words):
            pieces.append(" ".join(words[start : start + max_words]))
    return pieces


def _text_file(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"corpus: {path}: not UTF-8 text ({error.reason})") from None
    return [{"text": piece, "source": f"{path}#{i}"} for i, piece in enumerate(paragraphs(text))]


def _rows(path: Path, text_column: str) -> list[dict]:
    """The rows of a CSV / TSV / JSONL file as passages (other columns kept)."""
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise CorpusError(
                            f"corpus: {path}:{number}: bad JSON ({error.msg})"
                        ) from None
                    if not isinstance(row, dict):
                        raise CorpusError(f"corpus: {path}:{number}: expected a JSON object")
                    rows.append(row)
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter=TABLE_SUFFIXES[path.suffix]))
    if rows and text_column not in rows[0]:
        columns = ", ".join(rows[0]) or "none"
        raise CorpusError(
            f"text_column: {path} has no column {text_column!r}; its columns: {columns}"
        )
    passages = []
    for number, row in enumerate(rows):
        text = " ".join(str(row.get(text_column) or "").split())
        if text:
            extra = {k: v for k, v in row.items() if k != text_column and isinstance(v, str)}
            passages.append({**extra, "text": text, "source": f"{path}#{number}"})
    return passages


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.suffix.lower() not in SKIPPED_SUFFIXES
        )  # fmt: skip
    if path.is_file():
        return [path]
    raise CorpusError(f"corpus: {path}: no such file or folder")


def read_passages(paths, text_column: str = "text") -> list[dict]:
    """Passages of every file in ``paths`` (a path or a list of them), in order.

    Raises CorpusError: a missing path, a missing text column, undecodable text, or no
    passage at all."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    passages = []
    for path in paths:
        for file in _files(Path(path)):
            if file.suffix in TABLE_SUFFIXES or file.suffix == ".jsonl":
                passages += _rows(file, text_column)
            else:
                passages += _text_file(file)
    if not passages:
        shown = " ".join(str(p) for p in paths) or "(none given)"
        raise CorpusError(f"corpus: no text in {shown}; give text files, folders or CSV/JSONL")
    return passages
