"""``atenea index`` and ``atenea search``: the command-line front of ``atenea.retrieval``.

    atenea index notes/ --out runs/notes-index                 text files: one passage a paragraph
    atenea index articles.jsonl --text-column body --out idx   one passage a row
    atenea search idx "What is attention?" -k 5

The index folder holds ``embeddings.safetensors`` and ``index.json``; search embeds the question
with the same model (the bundled all-MiniLM-L6-v2 unless ``--model`` says otherwise) and prints
the passages with their cosine scores. ``--out`` may be a new or empty folder, or an index atenea
wrote (replaced); anything else there (a model, the user's files, a file) only with
``--overwrite`` (``cli/outputs.py``), and never the corpus itself: an ``--out`` that is or holds
a corpus path is refused, and a file at ``--out`` is replaced only once the index is built.
Passages longer than the model reads are cut into pieces it reads whole, and the summary says
how many (``retrieval.corpus.split_long``).
"""

from __future__ import annotations

import time
from pathlib import Path

RETRIEVAL_FLAGS = {"corpus": "CORPUS", "text_column": "--text-column", "k": "-k",
                   "model": "--model", "index": "IDX"}  # fmt: skip
SHOWN_CHARACTERS = 240


def add_parsers(subparsers) -> None:
    index = subparsers.add_parser(
        "index",
        help="embed a corpus of passages into a searchable index",
        description="Embed every passage of a corpus with a sentence-embedding model (default: "
        "the bundled all-MiniLM-L6-v2) and save the index: text files give one passage per "
        "paragraph, CSV/TSV/JSONL files one per row.",
    )
    index.add_argument("corpus", nargs="+", metavar="CORPUS",
                       help="text files, folders, or .csv/.tsv/.jsonl files")  # fmt: skip
    index.add_argument(
        "--out",
        required=True,
        metavar="IDX",
        help="the index folder to write (a new or empty folder, or an index atenea wrote, unless "
        "--overwrite)",
    )
    index.add_argument(
        "--overwrite",
        action="store_true",
        help="write into --out even if it holds a model or files atenea did not write (or "
        "replace it if it is a file)",
    )
    index.add_argument("--text-column", default="text", help="CSV/JSONL: the text column (text)")
    index.add_argument("--model", default="minilm", help="embedding model folder (minilm)")
    index.add_argument("--batch-size", type=int, default=64, help="passages per batch (64)")
    index.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    index.set_defaults(run=run_index)

    search = subparsers.add_parser(
        "search",
        help="find the passages of an index closest to a question",
        description="Print the k passages of an index whose embeddings are closest (cosine) to "
        "the question's, best first, with their scores.",
    )
    search.add_argument("index", metavar="IDX", help="an index folder written by atenea index")
    search.add_argument("question", help="the question or text to search for")
    search.add_argument("-k", type=int, default=5, help="how many passages (5)")
    search.add_argument("--model", help="embedding model folder (default: the index's)")
    search.set_defaults(run=run_search)


def run_index(args) -> int:
    from atenea.cli.errors import USER_ERRORS, fail

    try:
        return _index(args)
    except USER_ERRORS as error:
        return fail("index", error, flags=RETRIEVAL_FLAGS)


def run_search(args) -> int:
    from atenea.cli.errors import USER_ERRORS, fail

    try:
        return _search(args)
    except USER_ERRORS as error:
        return fail("search", error, flags=RETRIEVAL_FLAGS)


def is_atenea_index(folder: Path) -> bool:
    """Whether ``folder`` is an index ``atenea index`` wrote (its ``index.json`` starts with the
    index format), with no model in it: ``atenea index`` may write it again."""
    from atenea.cli.outputs import holds_model
    from atenea.retrieval.formats import is_index_folder

    return is_index_folder(folder) and not holds_model(folder)


def _check_out_apart(out: Path, corpus: list[str]) -> None:
    """Raise ``ValueError`` when ``--out`` is a corpus path or holds one (writing the index
    there could replace the corpus, and ``--overwrite`` would delete a corpus file), or sits
    in a corpus folder with files of its own (the corpus's). An empty or index folder inside a
    corpus folder is fine: reading the corpus leaves it out."""
    from atenea.retrieval.formats import is_index_folder

    target = out.resolve()
    empty = out.is_dir() and not any(out.iterdir())
    free = not out.exists() or empty or (out.is_dir() and is_index_folder(out))
    for path in map(Path, corpus):
        source = path.resolve()
        if target == source or source.is_relative_to(target):
            what = "is" if target == source else "holds"
            raise ValueError(f"--out: {out} {what} the corpus {path}; choose another folder "
                             f"for the index")  # fmt: skip
        if source.is_dir() and target.is_relative_to(source) and not free:
            raise ValueError(f"--out: {out} is inside the corpus {path} and holds its files; "
                             f"choose a new folder for the index")  # fmt: skip


def _model_name(model: str) -> str:
    """What the index records of ``--model``: a bundled name as it is, a folder as an absolute
    path (a relative one would only work from the folder ``atenea index`` ran in)."""
    from atenea.models.pretrained.folder import BUNDLED_NAMES

    if model in BUNDLED_NAMES or not Path(model).exists():
        return model
    return str(Path(model).resolve())


def _index(args) -> int:
    from atenea.cli.outputs import check_folder_output
    from atenea.retrieval import PassageIndex, load_embedder, read_passages
    from atenea.retrieval.corpus import split_long

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    out = Path(args.out)
    # Before the passages are embedded: the index replaces only an index atenea wrote, and
    # never the corpus. Nothing is deleted yet: a build that fails leaves --out as it was.
    _check_out_apart(out, args.corpus)
    check_folder_output(out, args.overwrite, is_atenea_index, delete=False)
    started = time.perf_counter()
    passages = read_passages(args.corpus, text_column=args.text_column, max_words=None,
                             exclude=[out])  # fmt: skip
    model, tokenizer = load_embedder(args.model)
    # cut by tokens, not words: 160 words of Spanish or code are over MiniLM's 256 tokens
    passages, split = split_long(passages, tokenizer)
    index = PassageIndex.build(passages, model, tokenizer, model_name=_model_name(args.model),
                               batch_size=args.batch_size, progress=not args.quiet)  # fmt: skip
    if out.is_file():  # --overwrite said so (check_folder_output): replaced only now
        out.unlink()
    index.save(out)
    if not args.quiet:
        seconds = time.perf_counter() - started
        if split:
            print(f"split {split} passages longer than {tokenizer.model_max_length} tokens into "
                  f"pieces the model reads whole")  # fmt: skip
        print(f"indexed {len(index)} passages in {seconds:.1f}s: {args.out}")
        print(f'next: atenea search {args.out} "your question" -k 5')
    return 0


def _search(args) -> int:
    from atenea.retrieval import PassageIndex, load_embedder
    from atenea.retrieval.index import passage_label

    if args.k < 1:
        raise ValueError(f"-k: expected an integer >= 1, got {args.k}")
    if not args.question.strip():
        raise ValueError("question: empty; give the text to search for")
    index = PassageIndex.load(args.index)
    model, tokenizer = load_embedder(args.model or index.model)
    hits = index.search([args.question], model, tokenizer, k=args.k)[0]
    for rank, hit in enumerate(hits, 1):
        text = hit.passage["text"]
        if len(text) > SHOWN_CHARACTERS:
            text = text[:SHOWN_CHARACTERS].rsplit(" ", 1)[0] + " ..."
        title = hit.passage.get("title")
        where = passage_label(hit.passage, hit.position)
        head = f"{rank}. {hit.score:.3f}  {f'{title} - ' if title else ''}{where}"
        print(f"{head}\n   {text}")
    return 0


def evaluate_with_knn(args, task, model) -> dict:
    """``atenea evaluate --knn DATASTORE``: the lm task's validation rows scored by the model
    alone and interpolated with the datastore (built from the training rows when missing)."""
    from atenea.retrieval.knn import INFO_FILE, Datastore, evaluate_knn

    if task.name != "lm" or not hasattr(task, "train_rows") or task.options.get("segment"):
        raise ValueError("--knn: for lm models trained on packed rows (without --segment)")
    if args.knn_k < 1:
        raise ValueError(f"--knn-k: expected an integer >= 1, got {args.knn_k}")
    if not 0.0 <= args.knn_lambda <= 1.0:
        raise ValueError(f"--lambda: expected a weight in [0, 1], got {args.knn_lambda}")
    folder = Path(args.knn)
    if (folder / INFO_FILE).is_file():
        store = Datastore.load(folder)
    else:  # built here: a new or empty folder only, checked before the long build
        from atenea.cli.outputs import check_folder_output, make_output_folder

        check_folder_output(folder, args.overwrite, flag="--knn", doing="build a datastore in it")
        make_output_folder(folder, "--knn")
        store = Datastore.build(model, task.train_rows, progress=True)
        store.save(folder)
        print(f"built a datastore of {len(store)} tokens: {folder}")
    rows = task.val_rows
    if args.limit is not None:
        rows = tuple(t[: args.limit] for t in rows)
    return evaluate_knn(model, rows, store, lam=args.knn_lambda, k=args.knn_k, progress=True)


def explain_passages(args) -> int:
    """``atenea explain TEXT --passages IDX``: the attention TEXT pays to its retrieved
    passages, per layer (a table), for the model of ``--model``."""
    from atenea.cli.errors import USER_ERRORS, fail

    try:
        return _explain_passages(args)
    except USER_ERRORS as error:
        flags = {**RETRIEVAL_FLAGS, "index": "--passages", "max_tokens": "--max-tokens"}
        return fail("explain", error, flags=flags)


def _explain_passages(args) -> int:
    from atenea.inspect.passages import attention_to_passages
    from atenea.models import load_pretrained
    from atenea.retrieval import PassageIndex, load_embedder
    from atenea.retrieval.index import passage_label

    if args.top_k < 1:
        raise ValueError(f"--top-k: expected an integer >= 1, got {args.top_k}")
    index = PassageIndex.load(args.passages)
    embedder, embedder_tokenizer = load_embedder(index.model)
    hits = index.search([args.text], embedder, embedder_tokenizer, k=args.top_k)[0]
    model, tokenizer = load_pretrained(args.model)
    if tokenizer is None:
        raise ValueError(f"--model: {args.model}: the checkpoint has no tokenizer.json")
    limit = args.max_tokens or tokenizer.model_max_length or 512
    found = attention_to_passages(model, tokenizer, [h.passage["text"] for h in hits],
                                  args.text, limit=limit)  # fmt: skip
    print(f"atenea explain: where the tokens of {args.text!r} look, {type(model).__name__}")
    for hit, label in zip(hits, found.labels, strict=False):
        shown = hit.passage.get("title") or passage_label(hit.passage, hit.position)
        print(f"  {label}: {hit.score:.3f}  {shown}")
    print("\nattention of the question's tokens (heads and tokens averaged), per layer:")
    print("| layer | " + " | ".join(found.labels) + " |")
    print("|---" * (len(found.labels) + 1) + "|")
    rows = [(str(i), row) for i, row in enumerate(found.shares)] + [("mean", found.mean)]
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{float(v):.3f}" for v in row) + " |")
    return 0
