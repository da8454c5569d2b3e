"""Reading the user's data files into examples, and the train / validation split.

An example is a plain dict:

- classify: ``{"text": str, "label": str}`` (labels are always strings);
- translate: ``{"source": str, "target": str}``;
- lm, mlm: ``{"text": str, "source": str}`` (one document; ``source`` is its path).

Formats come from the suffix: ``.csv`` and ``.tsv`` (a header row names the columns), ``.jsonl``
or ``.json`` (one JSON object per line; a ``.json`` file holding one JSON array of objects is
read too), and for texts any file, folder or glob pattern. Everything that goes wrong is a
:class:`DataError` whose message starts with the file (and line) at fault, so the command line
can print it as is (the reading itself is ``retrieval.files``). The split is a pure function of
``seed``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from atenea.retrieval.files import (
    TABLE_SUFFIXES,
    DataError,
    check_suffix,
    field_value,
    read_documents,
    read_pairs,
    read_text,
)

__all__ = ["TABLE_SUFFIXES", "DataError", "Split", "read_classify", "read_texts", "read_translate"]


@dataclass
class Split:
    """The examples to train on and the held-out ones to evaluate on."""

    train: list[dict]
    validation: list[dict]


# -- the split ---------------------------------------------------------------------------------


def _validation_count(total: int, fraction: float) -> int:
    """How many of ``total`` examples to hold out: at least one when there are two or more,
    never all of them."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_fraction: expected a number in [0, 1), got {fraction}")
    if total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def random_split(examples: list, fraction: float, seed: int, keep=None) -> Split:
    """Hold out a seeded random ``fraction`` of ``examples``; ``keep(example)`` names a group
    (the label) that must keep at least one example in train. Both parts keep file order.
    ``examples`` may be anything in a list: the image task splits image indices."""
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
    examples = read_pairs(path, text_column, label_column, names)
    if validation is None:
        return random_split(examples, validation_fraction, seed, keep=lambda e: e["label"])
    held_out = read_pairs(validation, text_column, label_column, names)
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
        return random_split(examples, validation_fraction, seed)
    return Split(examples, _read_translate_file(Path(validation), source_column, target_column))


def _read_translate_file(path: Path, source_column: str, target_column: str) -> list[dict]:
    names = ("source", "target")
    if check_suffix(path) != ".tsv":
        return read_pairs(path, source_column, target_column, names)
    text = read_text(path)
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
        where = f"{path}:{number}"
        examples.append({name: field_value(where, record, name, None) for name in names})
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
    documents = read_documents(paths)
    if validation is not None:
        return Split(documents, read_documents(validation))
    if len(documents) == 1:
        return _split_document(documents[0], validation_fraction)
    return random_split(documents, validation_fraction, seed)


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
