"""Reading the user's data files into examples, and the train / validation split.

An example is a plain dict:

- classify: ``{"text": str, "label": str}`` (labels are always strings);
- translate: ``{"source": str, "target": str}``;
- lm, mlm: ``{"text": str, "source": str}`` (one document; ``source`` is its path).

Formats come from the suffix: ``.csv`` and ``.tsv`` (a header row names the columns), ``.jsonl``
or ``.json`` (one JSON object per line; a ``.json`` file holding one JSON array of objects is
read too), and for texts any file, folder or glob pattern. Everything that goes wrong is a
:class:`DataError` whose message starts with the file (and line) at fault, so the command line
can print it as is. The split is a pure function of ``seed``.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
_GLOB_CHARS = "*?["
# A short prefix is enough to tell text from binary (images, archives, compiled files).
_BINARY_SNIFF_BYTES = 8192


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line."""


@dataclass
class Split:
    """The examples to train on and the held-out ones to evaluate on."""

    train: list[dict]
    validation: list[dict]


# -- reading files -----------------------------------------------------------------------------


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


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    return _decode(path, data)


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        supported = ", ".join(TABLE_SUFFIXES)
        raise DataError(
            f"{path}: unknown format {suffix or '(no suffix)'!r}; supported: {supported}"
        )
    return suffix


def _read_records(path: Path) -> tuple[list[str] | None, list[tuple[str, dict]]]:
    """The records of a table file: ``(columns, [(where, record), ...])``.

    ``columns`` is the header of a CSV/TSV file (None for JSON lines, whose objects may differ);
    ``where`` is ``"file:line"`` for messages.
    """
    suffix = _check_suffix(path)
    text = _read_text(path)
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


def _field(where: str, record: dict, column: str, columns: list[str] | None) -> str:
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


def _read_pairs(path, first: str, second: str, names: tuple[str, str]) -> list[dict]:
    """Examples ``{names[0]: record[first], names[1]: record[second]}`` of a table file."""
    path = Path(path)
    columns, records = _read_records(path)
    if columns is not None:
        for column in (first, second):
            if column not in columns:
                found = ", ".join(repr(c) for c in columns)
                raise DataError(f"{path}: no {column!r} column (columns found: {found})")
    if not records:
        raise DataError(f"{path}: no examples")
    return [
        {
            names[0]: _field(where, record, first, columns),
            names[1]: _field(where, record, second, columns),
        }
        for where, record in records
    ]


def _validation_count(total: int, fraction: float) -> int:
    """How many of ``total`` examples to hold out: at least one when there are two or more,
    never all of them."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_fraction: expected a number in [0, 1), got {fraction}")
    if total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def _random_split(examples: list, fraction: float, seed: int, keep=None) -> Split:
    """Hold out a seeded random ``fraction`` of ``examples``; ``keep(example)`` names a group
    (the label) that must keep at least one example in train. Both parts keep file order."""
    wanted = _validation_count(len(examples), fraction)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    left_in_train = Counter(keep(e) for e in examples) if keep is not None else None
    held_out: set[int] = set()
    for index in order:
        if len(held_out) == wanted:
            break
        if left_in_train is not None:
            group = keep(examples[index])
            if left_in_train[group] <= 1:
                continue  # the last example of this label stays in train
            left_in_train[group] -= 1
        held_out.add(index)
    train = [e for i, e in enumerate(examples) if i not in held_out]
    validation = [e for i, e in enumerate(examples) if i in held_out]
    return Split(train, validation)


# -- public readers ----------------------------------------------------------------------------


def read_classify(
    path,
    text_column: str = "text",
    label_column: str = "label",
    validation=None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Examples ``{"text", "label"}`` of a CSV / TSV / JSONL file (labels as strings).

    Args:
        path: the data file (str or Path).
        text_column, label_column: the columns (JSON fields) to read.
        validation: an optional second file of the same kind; otherwise a seeded random
            ``validation_fraction`` of ``path`` is held out (every label keeps at least one
            training example).
        seed: the split's seed.

    Raises:
        DataError: missing file or column, no rows, an empty text or label (file:line), bad
            JSON or undecodable bytes (file:line), a label found only in validation.
    """
    names = ("text", "label")
    examples = _read_pairs(path, text_column, label_column, names)
    if validation is None:
        return _random_split(examples, validation_fraction, seed, keep=lambda e: e["label"])
    held_out = _read_pairs(validation, text_column, label_column, names)
    unseen = sorted({e["label"] for e in held_out} - {e["label"] for e in examples})
    if unseen:
        listed = ", ".join(repr(label) for label in unseen)
        raise DataError(
            f"{validation}: label(s) {listed} appear only in validation, never in {path}: "
            "a classifier cannot learn them"
        )
    return Split(examples, held_out)


def read_translate(
    path,
    source_column: str = "source",
    target_column: str = "target",
    validation=None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Examples ``{"source", "target"}`` of a translation file.

    A ``.tsv`` file has two columns: its first row is a header if it names ``source_column``
    and ``target_column``, otherwise every row is data (columns 0 and 1). CSV and JSON lines
    name their columns. ``validation`` / ``validation_fraction`` / ``seed`` as in
    :func:`read_classify`.
    """
    examples = _read_translate_file(Path(path), source_column, target_column)
    if validation is None:
        return _random_split(examples, validation_fraction, seed)
    return Split(examples, _read_translate_file(Path(validation), source_column, target_column))


def _read_translate_file(path: Path, source_column: str, target_column: str) -> list[dict]:
    names = ("source", "target")
    if _check_suffix(path) != ".tsv":
        return _read_pairs(path, source_column, target_column, names)
    text = _read_text(path)
    examples, columns = [], None
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        cells = line.split("\t")
        if columns is None:  # the first row: a header if it names both columns
            header = [c.strip() for c in cells]
            if source_column in header and target_column in header:
                columns = (header.index(source_column), header.index(target_column))
                continue
            columns = (0, 1)
        if len(cells) <= max(columns):
            raise DataError(
                f"{path}:{number}: expected {max(columns) + 1} tab-separated columns, "
                f"found {len(cells)}"
            )
        record = {"source": cells[columns[0]], "target": cells[columns[1]]}
        examples.append({name: _field(f"{path}:{number}", record, name, None) for name in names})
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def read_texts(paths, validation=None, validation_fraction: float = 0.1, seed: int = 0) -> Split:
    """Documents ``{"text", "source"}`` for language modelling, one per file.

    Args:
        paths: a file, folder or glob pattern (str or Path), or a list of them. Folders are
            read recursively in sorted order, skipping hidden and binary files (NUL bytes);
            patterns are expanded with ``**`` recursion. Empty files are skipped.
        validation: optional paths of held-out documents; otherwise a seeded random
            ``validation_fraction`` of the documents is held out (a single document is cut by
            lines into a training part and a validation part).

    Raises:
        DataError: a missing file, a pattern or folder with no text file, undecodable bytes
            (file:line).
    """
    documents = _read_documents(paths)
    if validation is not None:
        return Split(documents, _read_documents(validation))
    if len(documents) == 1:
        return _split_document(documents[0], validation_fraction)
    return _random_split(documents, validation_fraction, seed)


def _read_documents(paths) -> list[dict]:
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
        text = _read_text(file)
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
                files.extend(_folder_files(match))
            elif not _is_binary(match):
                files.append(match)
        if not files:
            raise DataError(f"{entry}: the pattern matches no text file")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise DataError(f"{path}: the folder holds no text file")
        return files
    if _is_binary(path):
        raise DataError(f"{path}: a binary file (it contains NUL bytes), expected text")
    return [path]


def _folder_files(folder: Path) -> list[Path]:
    """Non-hidden, non-binary files under ``folder``, recursively, sorted by path."""
    files = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder).parts
        if file.is_file() and not any(part.startswith(".") for part in relative):
            if not _is_binary(file):
                files.append(file)
    return files


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return b"\0" in handle.read(_BINARY_SNIFF_BYTES)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _split_document(document: dict, fraction: float) -> Split:
    """Cut a single document into a head to train on and a tail to validate on, at a line
    boundary (at a character when it is one line), so validation is never empty."""
    text = document["text"].rstrip()  # so the tail is never only blank lines
    lines = text.splitlines(keepends=True)
    pieces = lines if len(lines) >= 2 else list(text)
    held_out = _validation_count(len(pieces), fraction)
    if held_out == 0:
        raise DataError(f"{document['source']}: too short to hold out a validation part")
    cut = len(pieces) - held_out
    head, tail = "".join(pieces[:cut]), "".join(pieces[cut:])
    source = document["source"]
    return Split([{"text": head, "source": source}], [{"text": tail, "source": source}])
