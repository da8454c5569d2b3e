"""The Python 3.11 documentation as long-form text: 497 reStructuredText sources from the Debian
package ``python3.11-doc`` (about 1.4 million words; tutorials, the library reference, HOWTOs),
documents of thousands of tokens, for models whose context goes beyond one segment.

Files: ``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``. Install: ``apt-get install
python3.11-doc`` (Debian, Ubuntu). License: the PSF License, as Python's.

Split (fixed, no seed): files sorted by path; every ``VALIDATION_EVERY``-th one (the 10th,
20th, ...) is validation, the rest train.
"""

from __future__ import annotations

from pathlib import Path

from atenea.training.data import DataError, Split

ROOT = Path("/usr/share/doc/python3.11/html/_sources")
VALIDATION_EVERY = 10
INSTALL = "apt-get install python3.11-doc"


def documents(root: Path = ROOT) -> list[dict]:
    """``{"text", "source"}`` per non-empty file, sorted by path relative to ``root``."""
    files = sorted(root.rglob("*.rst.txt")) if root.is_dir() else []
    if not files:
        raise DataError(f"pydocs: {root}: no documentation sources; install them: {INSTALL}")
    docs = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            docs.append({"text": text, "source": path.relative_to(root).as_posix()})
    return docs


def split(root: Path = ROOT) -> Split:
    """The fixed split of the module docstring."""
    docs = documents(root)
    train = [d for i, d in enumerate(docs, 1) if i % VALIDATION_EVERY]
    validation = [d for i, d in enumerate(docs, 1) if not i % VALIDATION_EVERY]
    return Split(train, validation)
