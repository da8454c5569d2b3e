"""``bible-es-en``: the Bible verse by verse, Spanish (Reina-Valera 1909) -> English (King
James), from Debian's ``sword-text-sparv`` and ``sword-text-kjv`` (public domain). Nothing is
downloaded: ``make data`` or ``apt-get install sword-text-sparv sword-text-kjv`` installs them.

Reading (no libsword needed). A SWORD zText module stores per testament (``ot``, ``nt``):

    .bzv   one 10-byte entry per slot: block number (u32), offset in the block (u32), size (u16)
    .bzs   one 12-byte entry per block: offset in .bzz (u32), compressed size, plain size (u32)
    .bzz   the blocks, each zlib-compressed UTF-8 OSIS markup

Slots follow the KJV versification in both modules: two header slots, then per book an intro
slot (``<div osisID="Gen" type="book">``), per chapter an intro slot (``<chapter sID=...>``),
then the verses. So slot n of one module is slot n of the other: verse n pairs with verse n.

Cleaning: intro slots (book titles, chapter marks) are not verses and are skipped; markup is
removed but its words kept (``<w>``, ``<transChange>``, ``<divineName>``, ``<q>``...); notes,
their cross-references and titles (the KJV's psalm superscriptions, which the Spanish text
lacks) are dropped with their words; the KJV's paragraph marks "¶" go; spaces are collapsed;
the Spanish chapter openings in capitals ("Y ACONTECIÓ en") are written "Y aconteció en".
A pair where either side is empty is left out.

The split is by book, fixed (no seed): validation and test verses come from books the model
never trains on.

    validation  Ruth, Esther, Jonah, Titus, Philemon      narrative and two short letters
    test        Acts, James                               a narrative, a letter
    train       the other 59 books
"""

from __future__ import annotations

import functools
import html
import re
import struct
import zlib
from pathlib import Path

from atenea.training.data import DataError, Split

NAME = "bible-es-en"
MODULES_ROOT = Path("/usr/share/sword/modules/texts/ztext")
SPANISH, ENGLISH = "spaRV1909eb", "engKJV2006eb"
VALIDATION_BOOKS = ("Ruth", "Esth", "Jonah", "Titus", "Phlm")
TEST_BOOKS = ("Acts", "Jas")
INSTALL = "apt-get install sword-text-sparv sword-text-kjv"

_BOOK_INTRO = re.compile(r'<div[^>]*\bosisID="([^"]+)"[^>]*\bsID="[^"]*"[^>]*type="book"')
_CHAPTER_INTRO = re.compile(r"<chapter\b[^>]*\bsID=")
_DROPPED = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.DOTALL)  # with their words
_TAG = re.compile(r"<[^>]+>")


def module_folder(module: str, root: Path = MODULES_ROOT) -> Path:
    """The folder of an installed module, or a ``DataError`` saying how to install it."""
    folder = Path(root) / module
    if not (folder / "nt.bzv").is_file():
        raise DataError(f"data: {NAME} needs the Debian packages of the Bible texts: {INSTALL}")
    return folder


def read_slots(folder: Path, testament: str) -> list[str]:
    """Every slot of one testament (``"ot"`` or ``"nt"``) of a zText module, as markup."""
    index = (folder / f"{testament}.bzv").read_bytes()
    blocks = (folder / f"{testament}.bzs").read_bytes()
    data = (folder / f"{testament}.bzz").read_bytes()
    plain: dict[int, bytes] = {}
    slots = []
    for block, offset, size in struct.iter_unpack("<IIH", index):
        if size == 0:
            slots.append("")
            continue
        if block not in plain:
            start, compressed, _ = struct.unpack_from("<III", blocks, 12 * block)
            plain[block] = zlib.decompress(data[start : start + compressed])
        slots.append(plain[block][offset : offset + size].decode("utf-8"))
    return slots


def clean(markup: str) -> str:
    """The words of a verse's OSIS markup (see the module docstring)."""
    text = _TAG.sub(" ", _DROPPED.sub(" ", markup))
    text = html.unescape(text).replace("\u00b6", " ")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)  # "earth ." (a tag was there) -> "earth."
    return re.sub(r"([¿¡(])\s+", r"\1", text)  # "¿ No" -> "¿No"


def _sentence_case(text: str) -> str:
    """The Spanish edition opens each chapter in capitals ("EN el principio", "Y ACONTECIÓ
    en"): the words in capitals before the first lowercase word are written as the start of
    a sentence ("En el principio", "Y aconteció en")."""
    words = text.split(" ")
    caps = 0
    while caps < min(len(words) - 1, 3) and words[caps].isupper():
        caps += 1
    if caps == 0 or not words[caps][:1].islower() or max(len(w) for w in words[:caps]) < 2:
        return text
    lowered = " ".join(words[:caps]).lower()
    return lowered[:1].upper() + lowered[1:] + " " + " ".join(words[caps:])


def verses(slots: list[str]) -> list[tuple[str, int]]:
    """``(book, slot index)`` of every verse slot: everything after a book's intro slot that is
    not a chapter's intro slot."""
    found, book = [], None
    for index, markup in enumerate(slots):
        intro = _BOOK_INTRO.search(markup)
        if intro:
            book = intro.group(1)
        elif book is not None and not _CHAPTER_INTRO.search(markup):
            found.append((book, index))
    return found


def pairs(root: Path = MODULES_ROOT) -> list[dict]:
    """Every aligned verse: ``{"source": Spanish, "target": English, "book": osisID}``."""
    return [dict(pair) for pair in _read_pairs(Path(root))]


@functools.lru_cache(maxsize=2)
def _read_pairs(root: Path) -> tuple[dict, ...]:
    # Read once per process (a few seconds): a run reads the corpus again to rebuild its task.
    spanish, english = module_folder(SPANISH, root), module_folder(ENGLISH, root)
    out = []
    for testament in ("ot", "nt"):
        es, en = read_slots(spanish, testament), read_slots(english, testament)
        if len(es) != len(en):
            raise DataError(
                f"data: {NAME}: the modules disagree on the versification of {testament} "
                f"({len(es)} and {len(en)} slots)"
            )
        spanish_books = dict((i, b) for b, i in verses(es))
        for book, index in verses(en):
            if spanish_books.get(index) != book:
                raise DataError(f"data: {NAME}: slot {index} is {book} in English only")
            source, target = _sentence_case(clean(es[index])), clean(en[index])
            if source and target:
                out.append({"source": source, "target": target, "book": book})
    return tuple(out)


def split(root: Path = MODULES_ROOT, test: bool = False) -> Split:
    """Train on all books but the held-out ones; validate on ``VALIDATION_BOOKS`` (or, with
    ``test=True``, on ``TEST_BOOKS``: the test set, for the final measurement only)."""
    held_out = TEST_BOOKS if test else VALIDATION_BOOKS
    train, validation = [], []
    for pair in pairs(root):
        if pair["book"] in held_out:
            validation.append(pair)
        elif pair["book"] not in VALIDATION_BOOKS + TEST_BOOKS:
            train.append(pair)
    return Split(train, validation)
