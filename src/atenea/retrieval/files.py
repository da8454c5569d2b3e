"""The user's files, read: bytes decoded as UTF-8, tables (CSV, TSV, JSON lines, a JSON array)
as records, and the text files that a path, folder or glob pattern names.

Everything that goes wrong is a ``DataError`` whose message starts with the file (and line) at
fault. ``retrieval.corpus`` cuts these into passages and ``training.data`` builds examples and
splits on top of them: the readers live here, in the lower of the two layers, so both can.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from pathlib import Path

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_GLOB_CHARS = "*?["
# A short prefix is enough to tell text from binary (images, archives, compiled files).
_BINARY_SNIFF_BYTES = 8192


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line."""


# -- one file ----------------------------------------------------------------------------------


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text of ``data`` (a leading byte-order mark dropped); an undecodable byte is a
    DataError naming its line and column, found by decoding line by line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        for number, line in enumerate(data.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = line[error.start]
                raise DataError(
                    f"{path}:{number}: not UTF-8 text "
                    f"(byte 0x{byte:02x} at column {error.start + 1})"
                ) from None
        # A sequence cut by a newline byte is invalid as a whole but fine line by line: not
        # possible in UTF-8 (continuation bytes are never 0x0a), so this is unreachable.
        raise DataError(f"{path}: not UTF-8 text") from None
    return text.removeprefix("\ufeff")


def read_text(path: Path) -> str:
    """The UTF-8 text of the file at ``path``."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    return _decode(path, data)


def check_suffix(path: Path) -> str:
    """The table format of ``path`` from its suffix (``.csv``, ``.tsv``, ``.jsonl``, ``.json``)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file ({', '.join(TABLE_SUFFIXES)})")
    if suffix not in TABLE_SUFFIXES:
        supported = ", ".join(TABLE_SUFFIXES)
        raise DataError(
            f"{path}: unknown format {suffix or '(no suffix)'!r}; supported: {supported}"
        )
    return suffix


# -- tables ------------------------------------------------------------------------------------


def read_records(path: Path) -> tuple[list[str] | None, list[tuple[str, dict]]]:
    """The records of a table file: ``(columns, [(where, record), ...])``.

    ``columns`` is the header of a CSV/TSV file (None for JSON lines, whose objects may differ);
    ``where`` is ``"file:line"`` for messages.
    """
    suffix = check_suffix(path)
    text = read_text(path)
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, text, suffix)
    return None, _read_json_lines(path, text)


def _read_delimited(path: Path, text: str, suffix: str) -> tuple[list[str], list]:
    # TSV files rarely quote fields, and a stray quote would swallow lines up to the next one:
    # read them literally. CSV follows the usual quoting rules (fields may span lines).
    if suffix == ".tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header row naming the columns)")
        columns = [name.strip() for name in header]
        records = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines
            record = {name: row[i] if i < len(row) else "" for i, name in enumerate(columns)}
            records.append((f"{path}:{reader.line_num}", record))
    except csv.Error as error:
        kind = suffix[1:].upper()
        raise DataError(f"{path}:{reader.line_num}: malformed {kind} ({error})") from None
    return columns, records


def _read_json_lines(path: Path, text: str) -> list[tuple[str, dict]]:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise DataError(f"{path}:{number}: expected a JSON object per line, got {kind}")
        records.append((f"{path}:{number}", record))
    return records


def _read_json_array(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DataError(f"{path}: expected JSON lines or one array of objects")
    return [(f"{path}: item {index + 1}", item) for index, item in enumerate(items)]


def field_value(where: str, record: dict, column: str, columns: list[str] | None) -> str:
    """The non-empty string in ``record[column]``; numbers (JSON labels) become strings."""
    if column not in record:
        found = ", ".join(repr(c) for c in (columns if columns is not None else record)) or "none"
        raise DataError(f"{where}: no {column!r} column (columns found: {found})")
    value = record[column]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        if value is None:
            raise DataError(f"{where}: empty {column!r}")
        kind = type(value).__name__
        raise DataError(f"{where}: {column!r} should be text, got JSON {kind}")
    value = str(value)
    if not value.strip():
        raise DataError(f"{where}: empty {column!r}")
    return value


def read_pairs(path, first: str, second: str, names: tuple[str, str]) -> list[dict]:
    """Examples ``{names[0]: record[first], names[1]: record[second]}`` of a table file."""
    path = Path(path)
    columns, records = read_records(path)
    if columns is not None:
        for column in (first, second):
            if column not in columns:
                found = ", ".join(repr(c) for c in columns)
                raise DataError(f"{path}: no {column!r} column (columns found: {found})")
    if not records:
        raise DataError(f"{path}: no examples")
    return [
        {
            names[0]: field_value(where, record, first, columns),
            names[1]: field_value(where, record, second, columns),
        }
        for where, record in records
    ]


def read_column(path, column: str) -> list[str]:
    """The values of one column of a table file, in order (inputs to predict); an empty cell is
    an error naming its line."""
    path = Path(path)
    columns, records = read_records(path)
    if columns is not None and column not in columns:
        found = ", ".join(repr(c) for c in columns)
        raise DataError(f"{path}: no {column!r} column (columns found: {found})")
    if not records:
        raise DataError(f"{path}: no rows")
    return [field_value(where, record, column, columns) for where, record in records]


# -- text documents ----------------------------------------------------------------------------


def read_documents(paths) -> list[dict]:
    """``{"text", "source"}`` of every non-empty text file that ``paths`` (a path, folder or
    glob pattern, or a list of them) names, each file once, in sorted order per entry."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for entry in paths:
        files.extend(_expand(entry))
    documents, seen = [], set()
    for file in files:
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        text = read_text(file)
        if text.strip():
            documents.append({"text": text, "source": str(file)})
    if not documents:
        listed = ", ".join(str(p) for p in paths)
        raise DataError(f"{listed}: no text (only empty files)")
    return documents


def _expand(entry) -> list[Path]:
    """The text files one path, folder or pattern names, in sorted order."""
    path = Path(entry)
    if any(char in str(entry) for char in _GLOB_CHARS) and not path.exists():
        matches = sorted(glob.glob(str(entry), recursive=True))
        if not matches:
            raise DataError(f"{entry}: no file matches this pattern")
        files = []
        for match in map(Path, matches):  # folders' files come back already without binaries
            if match.is_dir():
                files.extend(folder_files(match))
            elif not _is_binary(match):
                files.append(match)
        if not files:
            raise DataError(f"{entry}: the pattern matches no text file")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = folder_files(path)
        if not files:
            raise DataError(f"{path}: the folder holds no text file")
        return files
    if _is_binary(path):
        raise DataError(f"{path}: a binary file (it contains NUL bytes), expected text")
    return [path]


def folder_files(folder: Path, skip=None) -> list[Path]:
    """Non-hidden, non-binary files under ``folder``, recursively, sorted by path; ``skip``:
    a test of a folder under ``folder`` whose files are left out (say, an index atenea wrote)."""
    files, skipped = [], []
    for file in sorted(folder.rglob("*")):  # a folder sorts before what it holds
        relative = file.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if any(file.is_relative_to(gone) for gone in skipped):
            continue
        if skip is not None and file.is_dir() and skip(file):
            skipped.append(file)
        elif file.is_file() and not _is_binary(file):
            files.append(file)
    return files


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return b"\0" in handle.read(_BINARY_SNIFF_BYTES)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
