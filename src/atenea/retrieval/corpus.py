"""Reading a corpus into passages: ``{"text", "where", ...}`` dicts, the unit an index holds.

    text files (.txt, .md, .rst, ...)   one passage per paragraph (blank-line separated), long
                                        paragraphs cut at MAX_WORDS words (``max_words``)
    folders                             every text file inside, recursively, sorted by path,
                                        leaving out the indexes and datastores atenea wrote
    .csv / .tsv / .jsonl                one passage per row, from its text column; the row's
                                        other columns kept beside it as they are (a title, a
                                        URL in ``source``, a year)

``where`` is atenea's: the file and paragraph or row (``notes.txt#3``, ``rows.jsonl#0``). A
column of the user's named ``text`` or ``where`` (other than the text column) is kept as
``text_column`` / ``where_column``, so nothing of a row is lost.

The files are read by ``retrieval.files`` (UTF-8, tables, folders), as training reads its data.
MiniLM reads 256 tokens at most (about 190 English words, fewer in Spanish or code): a longer
passage would be embedded from its start only. ``split_long`` cuts such passages into pieces
the model reads whole, at the tokenizer's own token boundaries (``atenea index`` does, and says
how many); ``MAX_WORDS`` is a tokenizer-free first cut for callers that do not.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from atenea.retrieval.files import DataError, folder_files, read_records, read_text
from atenea.retrieval.formats import written_by_atenea

MAX_WORDS = 160
LOCATION = "where"  # atenea's key for a passage's file and paragraph / row
RESERVED = ("text", LOCATION)
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")  # a .json file is read as text, one passage a paragraph
SKIPPED_SUFFIXES = {".safetensors", ".bin", ".pt", ".png", ".jpg", ".gz", ".zip", ".pdf"}
# A blank line may hold spaces or tabs (editors leave them): it still ends a paragraph.
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


class CorpusError(ValueError):
    """A corpus that cannot be read into passages; the message names the file."""


def paragraphs(text: str, max_words: int | None = MAX_WORDS) -> list[str]:
    """Blank-line separated paragraphs of ``text``, whitespace collapsed, each cut into pieces
    of at most ``max_words`` words (None: not cut)."""
    pieces = []
    for block in _BLANK_LINE.split(text):
        words = block.split()
        step = max_words or max(len(words), 1)
        for start in range(0, len(words), step):
            pieces.append(" ".join(words[start : start + step]))
    return pieces


def _text_file(path: Path, max_words: int | None) -> list[dict]:
    # newlines as Python's text mode reads them, so a CRLF file has blank lines too
    text = read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    pieces = enumerate(paragraphs(text, max_words))
    return [{"text": piece, LOCATION: f"{path}#{i}"} for i, piece in pieces]


def _rows(path: Path, text_column: str) -> list[dict]:
    """The rows of a CSV / TSV / JSONL file as passages (every other column kept)."""
    try:
        columns, records = read_records(path)
    except DataError:
        if not read_text(path).strip():
            return []  # an empty table, like an empty text file: nothing to index
        raise
    if records and text_column not in (columns or records[0][1]):
        found = ", ".join(columns or records[0][1]) or "none"
        raise CorpusError(
            f"text_column: {path} has no column {text_column!r}; its columns: {found}"
        )
    passages = []
    for number, (_, row) in enumerate(records):
        text = " ".join(str(row.get(text_column) or "").split())
        if text:
            kept = {f"{k}_column" if k in RESERVED else k: v
                    for k, v in row.items() if k != text_column}  # fmt: skip
            passages.append({**kept, "text": text, LOCATION: f"{path}#{number}"})
    return passages


def _files(path: Path, exclude: set[Path]) -> list[Path]:
    if path.is_dir():
        if written_by_atenea(path):
            raise CorpusError(f"corpus: {path} is an index or datastore atenea wrote, not texts; "
                              f"give the files it was built from")  # fmt: skip

        def skip(folder: Path) -> bool:
            return folder.resolve() in exclude or written_by_atenea(folder)

        files = folder_files(path, skip=skip)
        return [p for p in files if p.suffix.lower() not in SKIPPED_SUFFIXES]
    if path.is_file():
        return [path]
    raise CorpusError(f"corpus: {path}: no such file or folder")


def read_passages(paths, text_column: str = "text", *, max_words: int | None = MAX_WORDS,
                  exclude=()) -> list[dict]:  # fmt: skip
    """Passages of every file in ``paths`` (a path or a list of them), in order, each file
    once (a file named twice, or also inside a folder given, is read the first time).
    ``max_words``: text paragraphs cut at that many words (None: whole, for ``split_long``);
    ``exclude``: folders left out of the folders given (the index being written).

    Raises CorpusError: a missing path, a missing text column, undecodable text, or no
    passage at all."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    excluded = {Path(p).resolve() for p in exclude}
    passages, seen = [], set()
    try:
        for path in paths:
            for file in _files(Path(path), excluded):
                if file.resolve() in seen:
                    continue
                seen.add(file.resolve())
                if file.suffix.lower() in TABLE_SUFFIXES:
                    passages += _rows(file, text_column)
                else:
                    passages += _text_file(file, max_words)
    except DataError as error:  # the file readers' message, said of the corpus
        raise CorpusError(f"corpus: {error}") from None
    if not passages:
        shown = " ".join(str(p) for p in paths) or "(none given)"
        raise CorpusError(f"corpus: no text in {shown}; give text files, folders or CSV/JSONL")
    return passages


def _cut_points(text: str, encoding, limit: int) -> list[int]:
    """Character offsets in ``text`` (its ``encoding``, without special tokens) where its
    pieces after the first start: as few pieces of at most ``limit`` tokens as fit, of about
    even length, each starting after a space where one is near, else at a word's first token,
    else anywhere (a "word" longer than a piece)."""
    # read once: each access to an Encoding's lists builds a new Python list
    words, offsets = encoding.word_ids, encoding.offsets
    total, start, cuts = len(offsets), 0, []
    while total - start > limit:
        left = total - start
        target = start + math.ceil(left / math.ceil(left / limit))  # <= start + limit
        near = range(target, max(start, target - limit // 4), -1)  # moving back a little only
        after_space = (i for i in near if text[offsets[i][0] - 1 : offsets[i][0]].isspace())
        word_start = (i for i in near if words[i] != words[i - 1])
        start = next(after_space, None) or next(word_start, target)
        cuts.append(offsets[start][0])
    return cuts


def split_long(passages: list[dict], tokenizer,
               max_tokens: int | None = None) -> tuple[list[dict], int]:  # fmt: skip
    """``(pieces, split)``: the passages, those longer than ``max_tokens`` tokens (default:
    what the tokenizer's ``model_max_length`` leaves besides its special tokens) cut into
    pieces that the model reads whole, and how many were cut. The text is cut at the
    tokenizer's offsets, after a space where one is near, so nothing of the text is left out
    (the pieces joined by spaces are the text, when it has spaces to cut at); each piece
    keeps the passage's other keys, its ``where`` ending in ``, part J/N``."""
    limit = max_tokens or (tokenizer.model_max_length or 0) - tokenizer.special_count()
    if limit < 1 or not passages:
        return list(passages), 0
    # the raw tokenizer: offsets and word ids, no truncation, no special tokens
    encodings = tokenizer.backend.encode_batch([p["text"] for p in passages],
                                               add_special_tokens=False)  # fmt: skip
    pieces, split = [], 0
    for passage, encoding in zip(passages, encodings, strict=True):
        if len(encoding) <= limit:
            pieces.append(passage)
            continue
        split += 1
        bounds = _cut_points(passage["text"], encoding, limit)
        texts = [passage["text"][a:b].strip()
                 for a, b in zip([0, *bounds], [*bounds, None], strict=True)]  # fmt: skip
        for number, text in enumerate(texts, 1):
            piece = {**passage, "text": text}
            if passage.get(LOCATION):
                piece[LOCATION] = f"{passage[LOCATION]}, part {number}/{len(texts)}"
            pieces.append(piece)
    return pieces, split
