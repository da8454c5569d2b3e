"""The bible-es-en corpus: the zText reader on modules written here (always), and on Debian's
real files when they are installed (else skipped, saying how to install them)."""

import struct
import zlib
from pathlib import Path

import pytest

from atenea.training.data import DataError
from atenea.training.datasets import bible


def write_ztext(folder: Path, testaments: dict[str, list[str]], per_block: int = 3) -> None:
    """A SWORD zText module: ``testaments`` maps ``ot``/``nt`` to their slots' markup."""
    folder.mkdir(parents=True)
    for name, slots in testaments.items():
        index, blocks, data = b"", b"", b""
        for first in range(0, len(slots), per_block):
            plain = b""
            for slot in slots[first : first + per_block]:
                raw = slot.encode("utf-8")
                index += struct.pack("<IIH", first // per_block, len(plain), len(raw))
                plain += raw
            packed = zlib.compress(plain)
            blocks += struct.pack("<III", len(data), len(packed), len(plain))
            data += packed
        (folder / f"{name}.bzv").write_bytes(index)
        (folder / f"{name}.bzs").write_bytes(blocks)
        (folder / f"{name}.bzz").write_bytes(data)


HEAD = ["", '<milestone type="x-importer"/>']


def book(osis, title):
    return f'<div canonical="true" osisID="{osis}" sID="b1" type="book"/> <title>{title}</title>'


def chapter(osis):
    return f'<chapter n="1" osisID="{osis}" sID="{osis}"/>'


def fake_modules(root: Path) -> None:
    spanish = {
        "ot": HEAD + [book("Gen", "Génesis"), chapter("Gen.1"),
                      '<w lemma="strong:H7225">EN el principio</w> crió Dios los cielos .',
                      "Y dijo Dios: Sea la luz", ""],
        "nt": HEAD + [book("Acts", "Hechos"), chapter("Acts.1"), "¿ Quién eres , Señor ?"],
    }  # fmt: skip
    english = {
        "ot": HEAD + [book("Gen", "Genesis"), chapter("Gen.1"),
                      "In the <w>beginning</w> God created<note type='x'>Heb. <reference>"
                      "Ps 1</reference></note> the heaven.",
                      "\u00b6 And God said, Let there be light", "And it was so."],
        "nt": HEAD + [book("Acts", "Acts"), chapter("Acts.1"),
                      '<title type="psalm">A Psalm</title>Who art thou, Lord?'],
    }  # fmt: skip
    write_ztext(root / bible.SPANISH, spanish)
    write_ztext(root / bible.ENGLISH, english)


def test_reader_aligns_slot_by_slot_and_strips_the_marks(tmp_path):
    fake_modules(tmp_path)
    assert bible.pairs(tmp_path) == [
        {"source": "En el principio crió Dios los cielos.",
         "target": "In the beginning God created the heaven.", "book": "Gen"},
        {"source": "Y dijo Dios: Sea la luz", "target": "And God said, Let there be light",
         "book": "Gen"},
        # the third Genesis slot is empty in Spanish: the pair is left out
        {"source": "¿Quién eres, Señor?", "target": "Who art thou, Lord?", "book": "Acts"},
    ]  # fmt: skip
    split = bible.split(tmp_path, test=True)  # Acts is a test book
    assert [p["book"] for p in split.train] == ["Gen", "Gen"]
    assert [p["book"] for p in split.validation] == ["Acts"]
    assert bible.split(tmp_path).validation == []  # no validation book in these modules


def test_missing_packages_say_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install sword-text-sparv sword-text-kjv"):
        bible.pairs(tmp_path)


def test_modules_with_different_versifications_are_refused(tmp_path):
    fake_modules(tmp_path)
    folder = tmp_path / bible.ENGLISH
    write_ztext(tmp_path / "short", {"nt": HEAD + [book("Acts", "Acts")]})
    for suffix in ("bzv", "bzs", "bzz"):
        (folder / f"nt.{suffix}").write_bytes((tmp_path / "short" / f"nt.{suffix}").read_bytes())
    with pytest.raises(DataError, match="versification"):
        bible.pairs(tmp_path)


# -- the real files ---------------------------------------------------------------------------

installed = (bible.MODULES_ROOT / bible.SPANISH / "nt.bzv").is_file() and (
    bible.MODULES_ROOT / bible.ENGLISH / "nt.bzv"
).is_file()
needs_modules = pytest.mark.skipif(
    not installed, reason=f"the Bible modules are not installed: {bible.INSTALL}"
)


@pytest.fixture(scope="module")
def real_pairs():
    return bible.pairs()


@needs_modules
def test_real_corpus_pairs_verse_n_with_verse_n(real_pairs):
    pairs = real_pairs
    assert 31000 < len(pairs) <= 31102  # the KJV versification has 31,102 verses
    assert len({p["book"] for p in pairs}) == 66
    assert pairs[0]["source"].startswith("En el principio crió Dios los cielos")
    assert pairs[0]["target"] == "In the beginning God created the heaven and the earth."
    wept = [p for p in pairs if p["target"] == "Jesus wept."]
    assert len(wept) == 1 and wept[0]["source"] == "Y lloró Jesús." and wept[0]["book"] == "John"
    assert pairs[-1]["book"] == "Rev" and pairs[-1]["target"].startswith("The grace of our Lord")
    for p in pairs:
        text = p["source"] + p["target"]
        assert "\u00b6" not in text and "<" not in text and ">" not in text
    # no book titles left as pairs
    assert not any(p["target"] in ("Genesis", "The Acts of the Apostles") for p in pairs)


@needs_modules
def test_real_split_is_by_book_and_fixed():
    first, test = bible.split(), bible.split(test=True)
    train_books = {p["book"] for p in first.train}
    assert {p["book"] for p in first.validation} == set(bible.VALIDATION_BOOKS)
    assert {p["book"] for p in test.validation} == set(bible.TEST_BOOKS)
    assert not train_books & (set(bible.VALIDATION_BOOKS) | set(bible.TEST_BOOKS))
    assert len(train_books) == 66 - len(bible.VALIDATION_BOOKS) - len(bible.TEST_BOOKS)
    assert first.train == test.train  # the same training data whichever set is held out


def test_corpus_names_are_checked_before_anything_is_read():
    from atenea.training.tasks import TaskError, build_task

    with pytest.raises(TaskError, match="data: bible-es-en is a corpus of translate"):
        build_task("classify", data="bible-es-en")
    with pytest.raises(TaskError, match="bible-es-en:test"):
        build_task("translate", data="bible-es-en:dev")
    with pytest.raises(TaskError, match="validation"):
        build_task("translate", data="bible-es-en", validation="other.tsv")
