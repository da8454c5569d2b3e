"""The django-es-en test set: the .po reader on a catalog written here, and on Django's own
catalogs when Django is installed."""

import pytest

from atenea.training.data import Split
from atenea.training.datasets import django_po
from atenea.training.tasks import TaskError, build_task

CATALOG = r"""# a comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#: forms.py:12
msgid "Enter a valid "
"email address."
msgstr "Introduzca una dirección de "
"correo electrónico válida."

#, fuzzy
msgid "Save"
msgstr "Salvar"

msgid "one item"
msgid_plural "%(count)s items"
msgstr[0] "un elemento"
msgstr[1] "%(count)s elementos"

msgid "Untranslated"
msgstr ""

msgctxt "month name"
msgid "May"
msgstr "Mayo"

msgid "Say \"hi\""
msgstr "Di \"hola\""
"""


def test_po_reader_joins_lines_and_keeps_the_flags(tmp_path):
    path = tmp_path / "django.po"
    path.write_text(CATALOG, encoding="utf-8")
    entries = django_po.read_po(path)
    assert [e["msgid"] for e in entries] == ["", "Enter a valid email address.", "Save",
                                              "one item", "Untranslated", "May", 'Say "hi"']  # fmt: skip
    assert entries[1]["msgstr"] == "Introduzca una dirección de correo electrónico válida."
    assert [e["fuzzy"] for e in entries] == [False, False, True, False, False, False, False]
    assert [e["plural"] for e in entries] == [False, False, False, True, False, False, False]
    assert entries[5]["msgstr"] == "Mayo" and entries[6]["msgstr"] == 'Di "hola"'


def test_real_catalogs_make_a_test_set():
    pytest.importorskip(
        "django", reason="django-es-en reads the catalogs of Django: pip install Django"
    )
    pairs = django_po.pairs()
    assert len(pairs) > 500
    assert {"source": "Introduzca una dirección de correo electrónico válida.",
            "target": "Enter a valid email address."} in pairs  # fmt: skip
    assert not any("%" in p["source"] + p["target"] or "\n" in p["target"] for p in pairs)
    assert len({(p["source"], p["target"]) for p in pairs}) == len(pairs)


def test_a_test_set_cannot_be_trained_on():
    with pytest.raises(TaskError, match="no training examples.*django-es-en is a test set"):
        build_task("translate", data=Split([], [{"source": "a", "target": "b"}]))
