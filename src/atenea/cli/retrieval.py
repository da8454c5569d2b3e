"""``atenea index`` and ``atenea search``: the command-line front of ``atenea.retrieval``.

    atenea index notes/ --out runs/notes-index                 text files: one passage a paragraph
    atenea index articles.jsonl --text-column body --out idx   one passage a row
    atenea search idx "What is attention?" -k 5

The index folder holds ``embeddings.safetensors`` and ``index.json``; search embeds the question
with the same model (the bundled all-MiniLM-L6-v2 unless ``--model`` says otherwise) and prints
the passages with their cosine scores. ``--out`` may be a new or empty folder, or an index atenea
wrote (replaced); anything else there (a model, the user's files, a file) only with
``--overwrite`` (``cli/outputs.py``).
"""

from __future__ import annotations

import json
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
    from atenea.retrieval.index import FORMAT, INDEX_FILE

    head = '{"format": ' + json.dumps(FORMAT)
    try:
        with (folder / INDEX_FILE).open(encoding="utf-8") as handle:
            ours = handle.read(len(head)) == head
    except (OSError, UnicodeDecodeError):
        return False
    return ours and not holds_model(folder)


def _index(args) -> int:
    from atenea.cli.outputs import check_folder_output
    from atenea.retrieval import PassageIndex, load_embedder, read_passages

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    # Before the passages are embedded: the index replaces only an index atenea wrote.
    check_folder_output(Path(args.out), args.overwrite, is_atenea_index)
    started = time.perf_counter()
    passages = read_passages(args.corpus, text_column=args.text_column)
    model, tokenizer = load_embedder(args.model)
    index = PassageIndex.build(passages, model, tokenizer, model_name=args.model,
                               batch_size=args.batch_size, progress=not args.quiet)  # fmt: skip
    index.save(args.out)
    if not args.quiet:
        seconds = time.perf_counter() - started
        print(f"indexed {len(index)} passages in {seconds:.1f}s: {args.out}")
        print(f'next: atenea search {args.out} "your question" -k 5')
    return 0


def _search(args) -> int:
    from atenea.retrieval import PassageIndex, load_embedder

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
        head = f"{rank}. {hit.score:.3f}  {title + ' - ' if title else ''}{hit.passage['source']}"
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
    return evaluate_knn(model, rows, store, lam=args.knn_lambda, k=args.knn_k)


def explain_passages(args) -> int:
    """``atenea explain TEXT --passages IDX``: the attention TEXT pays to its retrieved
    passages, per layer (a table), for the model of ``--model``."""
    from atenea.cli.errors import USER_ERRORS, fail

    try:
        return _explain_passages(args)
    except USER_ERRORS as error:
        return fail("explain", error, flags={**RETRIEVAL_FLAGS, "index": "--passages"})


def _explain_passages(args) -> int:
    from atenea.inspect.passages import attention_to_passages
    from atenea.models import load_pretrained
    from atenea.retrieval import PassageIndex, load_embedder

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
        print(f"  {label}: {hit.score:.3f}  {hit.passage.get('title') or hit.passage['source']}")
    print("\nattention of the question's tokens (heads and tokens averaged), per layer:")
    print("| layer | " + " | ".join(found.labels) + " |")
    print("|---" * (len(found.labels) + 1) + "|")
    rows = [(str(i), row) for i, row in enumerate(found.shares)] + [("mean", found.mean)]
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{float(v):.3f}" for v in row) + " |")
    return 0
