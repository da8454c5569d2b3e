"""The built-in long-context corpora: fixed splits of the installed packages, or a skip that
says how to install them."""

import pytest

from atenea.training.data import DataError
from atenea.training.datasets import pydocs, wikipedia


def test_wikipedia_split_is_fixed_and_covers_both_languages():
    if wikipedia.data_folder() is None:
        pytest.skip(f"the Wikipedia summaries are not installed: {wikipedia.INSTALL}")
    english = wikipedia.split("en")
    assert len(english.train) + len(english.validation) == len(wikipedia.articles("en"))
    assert len(english.validation) == len(wikipedia.articles("en")) // 10
    assert english.validation == wikipedia.split("en").validation  # no seed, same every call
    train_titles = {row["title"] for row in english.train}
    assert not train_titles & {row["title"] for row in english.validation}
    spanish = wikipedia.split("es")
    assert len(spanish.train) > 5000 and spanish.validation[0]["source"].startswith("wikipedia-es")
    with pytest.raises(DataError, match="language: expected one of en, es, got 'fr'"):
        wikipedia.articles("fr")


def test_pydocs_split_or_a_one_line_message(tmp_path):
    with pytest.raises(DataError, match="install them: apt-get install python3.11-doc"):
        pydocs.documents(tmp_path)
    if not pydocs.ROOT.is_dir():
        pytest.skip(f"the Python docs are not installed: {pydocs.INSTALL}")
    split = pydocs.split()
    assert len(split.train) + len(split.validation) == len(pydocs.documents())
    assert len(split.validation) == len(pydocs.documents()) // 10
    assert max(len(d["text"]) for d in split.validation) > 20_000  # long-form documents
