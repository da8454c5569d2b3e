"""Reading a corpus into passages: ``{"text", "source", ...}`` dicts, the unit an index holds.

    text files (.txt, .md, .rst, ...)   one passage per paragraph (blank-line separated), long
                                        paragraphs cut at MAX_WORDS words
    folders                             every text file inside, recursively, sorted by path
    .csv / .tsv / .jsonl                one passage per row, from its text column; the row's
                                        other columns kept beside it (a title, a topic)

The files are read by ``retrieval.files`` (UTF-8, tables, folders), as training reads its data.
MiniLM reads 256 tokens at most (about 190 English words): a longer passage would be embedded
from its start only, so paragraphs are cut before that.
"""

from __future__ import annotations

from pathlib import Path

from atenea.retrieval.files import DataError, folder_files, read_records, read_text

MAX_WORDS = 160
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")  # a .json file is read as text, one passage a paragraph
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
    # newlines as Python's text mode reads them, so a CRLF file has blank lines too
    text = read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    return [{"text": piece, "source": f"{path}#{i}"} for i, piece in enumerate(paragraphs(text))]


def _rows(path: Path, text_column: str) -> list[dict]:
    """The rows of a CSV / TSV / JSONL file as passages (other columns kept)."""
    columns, records = read_records(path)
    if records and text_column not in (columns or records[0][1]):
        found = ", ".join(columns or records[0][1]) or "none"
        raise CorpusError(
            f"text_column: {path} has no column {text_column!r}; its columns: {found}"
        )
    passages = []
    for number, (_, row) in enumerate(records):
        text = " ".join(str(row.get(text_column) or "").split())
        if text:
            extra = {k: v for k, v in row.items() if k != text_column and isinstance(v, str)}
            passages.append({**extra, "text": text, "source": f"{path}#{number}"})
    return passages


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in folder_files(path) if p.suffix.lower() not in SKIPPED_SUFFIXES]
    if path.is_file():
        return [path]
    raise CorpusError(f"corpus: {path}: no such file or folder")


def read_passages(paths, text_column: str = "text") -> list[dict]:
    """Passages of every file in ``paths`` (a path or a list of them), in order.

    Raises CorpusError: a missing path, a missing text column, undecodable text, or no
    passage at all."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    passages = []
    try:
        for path in paths:
            for file in _files(Path(path)):
                if file.suffix.lower() in TABLE_SUFFIXES:
                    passages += _rows(file, text_column)
                else:
                    passages += _text_file(file)
    except DataError as error:  # the file readers' message, said of the corpus
        raise CorpusError(f"corpus: {error}") from None
    if not passages:
        shown = " ".join(str(p) for p in paths) or "(none given)"
        raise CorpusError(f"corpus: no text in {shown}; give text files, folders or CSV/JSONL")
    return passages
