"""The Python standard library's own ``.py`` files as a text corpus for language modelling.

Every Python installation carries some ten megabytes of varied, well-written code: a corpus
that needs no download. Taken from ``sysconfig.get_paths()["stdlib"]`` of the running Python,
without ``site-packages``, the test suites (``test``/``tests`` folders, which include
``lib2to3/tests``), ``idlelib``, hidden folders and files over 200 kB. So the exact corpus is
that of this Python version; on one machine it is always the same.
"""

from __future__ import annotations

import os
import random
import sysconfig
from pathlib import Path

from atenea.training.data import Split

MAX_BYTES = 200_000
EXCLUDED_FOLDERS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
)
# Fixed: ``limit`` picks the same files on every call (documents() takes no seed).
_SHUFFLE_SEED = 0


def root() -> Path:
    """The standard library folder of the running Python."""
    return Path(sysconfig.get_paths()["stdlib"])


def _files(folder: Path) -> list[Path]:
    """The corpus's files, sorted by relative path."""
    files = []
    for directory, subfolders, names in os.walk(folder):
        # Prune while walking: site-packages alone can hold ten times the stdlib's files.
        subfolders[:] = [
            name for name in subfolders if name not in EXCLUDED_FOLDERS and not name.startswith(".")
        ]
        for name in names:
            path = Path(directory, name)
            if name.endswith(".py") and not name.startswith(".") and path.is_file():
                if path.stat().st_size <= MAX_BYTES:
                    files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def documents(limit: int | None = None) -> list[dict]:
    """Documents ``{"text", "source"}`` (``source``: the path relative to the stdlib folder),
    sorted by path. Empty and undecodable files are skipped.

    Args:
        limit: at most this many files, chosen by a fixed-seed shuffle of the whole list (so a
            small corpus still mixes modules, not only ``__future__`` .. ``_compat_pickle``),
            then sorted by path again. None: all of them.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit: expected a positive count or None, got {limit}")
    folder = root()
    files = _files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no standard library .py files found")
    if limit is not None:
        random.Random(_SHUFFLE_SEED).shuffle(files)
    chosen = []
    for path in files:
        if limit is not None and len(chosen) == limit:
            break
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few files carry other encodings on purpose; not worth a corpus hole
        if text.strip():
            chosen.append({"text": text, "source": path.relative_to(folder).as_posix()})
    return sorted(chosen, key=lambda document: document["source"])


def split(limit: int | None = None, validation_fraction: float = 0.05) -> Split:
    """:func:`documents` split by file (a file is wholly in train or in validation), a fixed
    seeded ``validation_fraction`` of the files (at least one) held out."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction: expected a number in (0, 1), got {validation_fraction}"
        )
    docs = documents(limit)
    if len(docs) < 2:
        raise ValueError(f"limit: need at least 2 files to split, got {len(docs)}")
    count = min(len(docs) - 1, max(1, round(len(docs) * validation_fraction)))
    order = list(range(len(docs)))
    random.Random(_SHUFFLE_SEED + 1).shuffle(order)
    held_out = set(order[:count])
    train = [d for i, d in enumerate(docs) if i not in held_out]
    validation = [d for i, d in enumerate(docs) if i in held_out]
    return Split(train, validation)
