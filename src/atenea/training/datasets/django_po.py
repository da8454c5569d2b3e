"""``django-es-en``: a small modern Spanish -> English test set, the Spanish translations of
Django's own messages ("Introduzca una dirección de correo electrónico válida." -> "Enter a
valid email address."), read from the ``.po`` catalogs inside the installed ``Django`` package
(BSD-3; ``pip install Django``). Nothing is downloaded.

A test set only (``atenea evaluate --model RUN --data django-es-en``): a model trained on the
Bible meets the language of software here. Kept: messages with a Spanish translation that is
not fuzzy, in one line, without format placeholders (``%(name)s``, ``{0}``) or markup; plural
forms are left out; each pair once, in the order of the files.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from atenea.training.data import DataError, Split

NAME = "django-es-en"
_PLACEHOLDER = re.compile(r"%|\{|\}|<|>|\n|\t")


def catalogs() -> list[Path]:
    """The Spanish ``.po`` files of the installed Django, sorted; DataError without Django."""
    spec = importlib.util.find_spec("django")
    if spec is None or spec.origin is None:
        raise DataError(
            f"data: {NAME} reads the catalogs of the Django package: pip install Django"
        )
    root = Path(spec.origin).parent
    return sorted(root.glob("**/locale/es/LC_MESSAGES/*.po"))


def read_po(path: Path) -> list[dict]:
    """The entries of one ``.po`` file: ``{"msgid", "msgstr", "plural", "fuzzy"}`` (the
    header, whose msgid is empty, included)."""
    entries, entry, field = [], None, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = line.strip()
        if not line:
            if entry is not None:
                entries.append(entry)
            entry, field = None, None
            continue
        if entry is None:
            entry = {"msgid": "", "msgstr": "", "plural": False, "fuzzy": False}
        if line.startswith("#,") and "fuzzy" in line:
            entry["fuzzy"] = True
        elif line.startswith("#"):
            continue
        elif line.startswith('"') and field is not None:
            entry[field] += ast.literal_eval(line)  # a continuation of the last string
        else:
            keyword, _, quoted = line.partition(" ")
            if keyword == "msgid_plural":
                entry["plural"] = True
            field = keyword if keyword in ("msgid", "msgstr") else None
            if field is not None:
                entry[field] = ast.literal_eval(quoted)
    return entries


def pairs() -> list[dict]:
    """``{"source": Spanish, "target": English}`` for every message kept (module docstring)."""
    seen, out = set(), []
    for path in catalogs():
        for e in read_po(path):
            english, spanish = e["msgid"].strip(), e["msgstr"].strip()
            if not english or not spanish or e["fuzzy"] or e["plural"]:
                continue
            if _PLACEHOLDER.search(english + spanish) or (spanish, english) in seen:
                continue
            seen.add((spanish, english))
            out.append({"source": spanish, "target": english})
    return out


def split(test: bool = False) -> Split:
    """Every pair is for evaluation: no training part."""
    return Split([], pairs())
