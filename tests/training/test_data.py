"""Reading user data files: formats, the split, and every error naming its file and line."""

import json

import pytest

from atenea.training.data import DataError, Split, read_classify, read_texts, read_translate


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def classify_rows(count: int) -> list[tuple[str, str]]:
    return [(f"text number {i}", ("pos", "neg", "neutral")[i % 3]) for i in range(count)]


# -- classify ----------------------------------------------------------------------------------


def test_csv_tsv_and_jsonl_give_the_same_examples(tmp_path):
    rows = classify_rows(30) + [('a "quoted", comma text', "pos")]
    csv_lines = ["text,label"] + ['"' + t.replace('"', '""') + f'",{label}' for t, label in rows]
    tsv_lines = ["text\tlabel"] + [f"{t}\t{label}" for t, label in rows]
    jsonl_lines = [json.dumps({"text": t, "label": label}) for t, label in rows]
    splits = [
        read_classify(write(tmp_path / "d.csv", "\n".join(csv_lines) + "\n")),
        read_classify(str(write(tmp_path / "d.tsv", "\r\n".join(tsv_lines)))),
        read_classify(write(tmp_path / "d.jsonl", "\n".join(jsonl_lines) + "\n\n")),
        read_classify(write(tmp_path / "d.json", "\n".join(jsonl_lines))),
        read_classify(
            write(
                tmp_path / "a.json", json.dumps([{"text": t, "label": label} for t, label in rows])
            )
        ),
    ]
    for split in splits[1:]:
        assert split == splits[0]
    everything = splits[0].train + splits[0].validation
    assert sorted((e["text"], e["label"]) for e in everything) == sorted(rows)


def test_split_is_seeded_and_keeps_every_label_in_train(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in classify_rows(50)),
    )
    first = read_classify(path, validation_fraction=0.2, seed=3)
    assert first == read_classify(path, validation_fraction=0.2, seed=3)
    assert first != read_classify(path, validation_fraction=0.2, seed=4)
    assert len(first.validation) == 10 and len(first.train) == 40
    assert not {e["text"] for e in first.train} & {e["text"] for e in first.validation}
    # A label with one example stays in train even when the shuffle would hold it out.
    rare = write(
        tmp_path / "rare.csv",
        "text,label\n" + "".join(f"t{i},common\n" for i in range(5)) + "only,rare\n",
    )
    for seed in range(10):
        split = read_classify(rare, validation_fraction=0.5, seed=seed)
        assert "rare" in {e["label"] for e in split.train}
        assert split.validation and all(e["label"] == "common" for e in split.validation)


def test_two_examples_give_one_validation_example(tmp_path):
    split = read_classify(write(tmp_path / "d.csv", "text,label\na,x\nb,x\n"))
    assert len(split.train) == 1 and len(split.validation) == 1


def test_other_columns_and_numeric_json_labels(tmp_path):
    path = write(
        tmp_path / "d.jsonl", '{"review": "fine", "stars": 5}\n{"review": "meh", "stars": 2}\n'
    )
    split = read_classify(path, text_column="review", label_column="stars")
    assert sorted(e["label"] for e in split.train + split.validation) == ["2", "5"]


def test_validation_file_and_labels_only_in_validation(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    ok = write(tmp_path / "ok.csv", "text,label\nc,y\n")
    assert read_classify(train, validation=ok) == Split(
        [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], [{"text": "c", "label": "y"}]
    )
    bad = write(tmp_path / "val.csv", "text,label\nc,z\nd,w\ne,x\n")
    with pytest.raises(DataError, match=r"val\.csv: label\(s\) 'w', 'z' appear only in validation"):
        read_classify(train, validation=bad)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("d.csv", "text,lbl\na,b\n", r"d\.csv: no 'label' column \(columns found: 'text', 'lbl'\)"),
        ("d.csv", "text,label\n", r"d\.csv: no examples"),
        ("d.csv", "", r"d\.csv: empty file"),
        ("d.csv", "text,label\na,x\n,y\n", r"d\.csv:3: empty 'text'"),
        ("d.tsv", "text\tlabel\na\tx\nb\n", r"d\.tsv:3: empty 'label'"),
        (
            "d.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
            r"d\.jsonl:2: invalid JSON",
        ),
        ("d.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', r"d\.jsonl:2: expected a JSON object"),
        (
            "d.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b"}\n',
            r"d\.jsonl:2: no 'label' column \(columns found: 'text'\)",
        ),
        ("d.jsonl", '{"text": "a", "label": null}\n', r"d\.jsonl:1: empty 'label'"),
        (
            "d.jsonl",
            '{"text": ["a"], "label": "x"}\n',
            r"d\.jsonl:1: 'text' should be text, got JSON list",
        ),
        ("d.jsonl", "\n\n", r"d\.jsonl: no examples"),
        (
            "d.xlsx",
            "whatever",
            r"d\.xlsx: unknown format '\.xlsx'; supported: \.csv, \.tsv, \.jsonl, \.json",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path, name, content, pattern):
    with pytest.raises(DataError, match=pattern):
        read_classify(write(tmp_path / name, content))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_classify(tmp_path / "nope.csv")
    (tmp_path / "reviews").mkdir()  # said "unknown format '(no suffix)'"
    with pytest.raises(DataError, match=r"reviews: is a folder, expected a data file \(\.csv"):
        read_classify(tmp_path / "reviews")


def test_undecodable_bytes_name_line_and_column(tmp_path):
    lines = (
        [b"text,label"]
        + [b"row %d,x" % i for i in range(15)]
        + [b"caf\xc3\xa9 ok,x", b"bad\xff here,y"]
    )
    path = tmp_path / "data.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"data\.csv:18: not UTF-8 text \(byte 0xff at column 4\)"):
        read_classify(path)


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext,label\na,x\nb,x\n".encode())
    split = read_classify(path)
    assert {e["text"] for e in split.train + split.validation} == {"a", "b"}


# -- translate ---------------------------------------------------------------------------------


def test_translate_tsv_with_and_without_header(tmp_path):
    rows = [("hola", "hello"), ("adiós", "goodbye"), ("gato", "cat")]
    plain = write(tmp_path / "p.tsv", "".join(f"{s}\t{t}\n" for s, t in rows))
    headed = write(
        tmp_path / "h.tsv",
        "id\ttarget\tsource\n" + "".join(f"{i}\t{t}\t{s}\n" for i, (s, t) in enumerate(rows)),
    )
    expected = [{"source": s, "target": t} for s, t in rows]
    for path in (plain, headed):
        split = read_translate(path, validation_fraction=0.3)
        assert sorted(split.train + split.validation, key=lambda e: e["source"]) == sorted(
            expected, key=lambda e: e["source"]
        )
        assert len(split.validation) == 1


def test_translate_named_columns_validation_and_errors(tmp_path):
    train = write(tmp_path / "t.jsonl", '{"es": "uno", "en": "one"}\n{"es": "dos", "en": "two"}\n')
    val = write(tmp_path / "v.csv", "es,en\ntres,three\n")
    split = read_translate(train, source_column="es", target_column="en", validation=val)
    assert split.validation == [{"source": "tres", "target": "three"}] and len(split.train) == 2
    with pytest.raises(DataError, match=r"short\.tsv:2: expected 2 tab-separated columns, found 1"):
        read_translate(write(tmp_path / "short.tsv", "a\tb\nonly one\n"))
    with pytest.raises(
        DataError, match=r"v\.csv: no 'source' column \(columns found: 'es', 'en'\)"
    ):
        read_translate(val)


# -- texts -------------------------------------------------------------------------------------


def make_tree(root):
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write(root / "b.txt", "bravo text\n")
    write(root / "a.md", "alpha text\n")
    write(root / "sub" / "c.py", "print('charlie')\n")
    write(root / "empty.txt", "  \n")
    write(root / ".hidden" / "secret.txt", "hidden\n")
    write(root / ".dotfile", "hidden too\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")


def test_folder_reads_text_files_sorted_skipping_hidden_binary_and_empty(tmp_path):
    make_tree(tmp_path / "corpus")
    split = read_texts(tmp_path / "corpus", validation_fraction=0.3)
    sources = sorted(e["source"] for e in split.train + split.validation)
    assert [s.split("corpus/")[1] for s in sources] == ["a.md", "b.txt", "sub/c.py"]
    assert len(split.validation) == 1
    assert read_texts(str(tmp_path / "corpus"), validation_fraction=0.3) == split
    by_source = {e["source"]: e["text"] for e in split.train + split.validation}
    assert by_source[str(tmp_path / "corpus" / "sub" / "c.py")] == "print('charlie')\n"


def test_globs_lists_and_validation_paths(tmp_path):
    make_tree(tmp_path)
    split = read_texts(
        [str(tmp_path / "**" / "*.py"), tmp_path / "a.md"], validation=str(tmp_path / "b.txt")
    )
    assert sorted(e["source"] for e in split.train) == [
        str(tmp_path / "a.md"),
        str(tmp_path / "sub" / "c.py"),
    ]
    assert split.validation == [{"text": "bravo text\n", "source": str(tmp_path / "b.txt")}]
    with pytest.raises(DataError, match=r"\*\.rst: no file matches this pattern"):
        read_texts(str(tmp_path / "*.rst"))


def test_single_document_is_cut_by_lines(tmp_path):
    lines = [f"line {i}\n" for i in range(20)]
    path = write(tmp_path / "one.txt", "".join(lines) + "\n\n")
    split = read_texts(path, validation_fraction=0.1)
    assert split.train[0]["text"] == "".join(lines[:18])
    assert split.validation[0]["text"] == "line 18\nline 19"
    one_line = read_texts(write(tmp_path / "short.txt", "abcdefghij"))
    assert one_line.train[0]["text"] + one_line.validation[0]["text"] == "abcdefghij"
    assert one_line.validation[0]["text"]


def test_split_by_documents_is_seeded(tmp_path):
    for i in range(40):
        write(tmp_path / f"doc{i:02d}.txt", f"document {i}\n")
    first = read_texts(tmp_path, seed=1)
    assert first == read_texts(tmp_path, seed=1) and first != read_texts(tmp_path, seed=2)
    assert len(first.validation) == 4 and len(first.train) == 36


def test_text_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing: no such file or folder"):
        read_texts(tmp_path / "missing")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match=r"bin\.dat: a binary file"):
        read_texts(tmp_path / "bin.dat")
    (tmp_path / "latin.txt").write_bytes("first line\nniño\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt:2: not UTF-8 text \(byte 0xf1 at column 3\)"):
        read_texts(tmp_path / "latin.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"nothing: the folder holds no text file"):
        read_texts(tmp_path / "nothing")
