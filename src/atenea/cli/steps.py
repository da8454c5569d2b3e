"""``atenea steps``: self-attention computed by hand on a few words, one printed step at a time.

The seven steps of the course, in its order: the input X, the projections Q/K/V, the scores and
their scaling, the mask, the softmax, the output, and a look at the weights (a heatmap). On
random weights by default (no model is read), or on one head of a real model with ``--model``.
``--heads``, ``--positions``, ``--permute`` and ``--compare`` add the multi-head split, position
information, the order experiment and a second sentence (``cli/steps_more.py``). Every sentence
comes from ``atenea.inspect.lang`` (``--lang en|es``); the tensors from ``atenea.inspect.lesson``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

import atenea
from atenea import masks
from atenea.cli import steps_more
from atenea.cli.errors import fail
from atenea.cli.tables import format_matrix
from atenea.inspect.lang import LanguageError, pick_language, say
from atenea.inspect.lesson import (
    POSITION_KINDS,
    Lesson,
    LessonError,
    random_lesson,
    seven_steps,
)
from atenea.inspect.plots import heatmap_png

MAX_TOKENS = 16

StepsError = LessonError  # bad input for ``atenea steps``: shown as one line


def add_parser(subparsers) -> None:
    """Add the ``steps`` subcommand to the ``atenea`` parser."""
    parser = subparsers.add_parser(
        "steps",
        help="self-attention by hand on a few words, one printed step at a time",
        description="Compute self-attention on a few words and print every step: the input, "
        "Q/K/V, scores, scaling, mask, softmax, output; then draw the weights as a heatmap. "
        "Random weights by default; --model minilm (or a checkpoint folder) uses one head of a "
        "real model.",
    )
    parser.add_argument(
        "text",
        nargs="?",
        help='the words (default: "The bank closed early", or '
        '"El banco cerró temprano" in Spanish)',
    )
    parser.add_argument(
        "--causal",
        action="store_true",
        help="apply a causal mask (each word sees only itself and earlier words)",
    )
    parser.add_argument(
        "--model", help="'minilm' (bundled) or an encoder/decoder folder: real weights"
    )
    parser.add_argument("--layer", type=int, help="with --model: the layer (default: chosen)")
    parser.add_argument(
        "--head", type=int, help="with --model: the head (default: chosen by the head descriptors)"
    )
    parser.add_argument(
        "--compare",
        metavar="TEXT2",
        help='a second sentence: ends with what a shared word (e.g. "bank") looks at in each',
    )
    parser.add_argument(
        "--focus", help="the word --compare follows (default: the longest word both texts share)"
    )
    parser.add_argument(
        "--heads",
        type=int,
        default=1,
        help="number of heads: the split of d_model, each head, the concatenation, W_O (default 1)",
    )
    parser.add_argument(
        "--positions",
        default="none",
        choices=POSITION_KINDS,
        help="position information: none (default), sinusoidal, learned, rope",
    )
    parser.add_argument(
        "--permute",
        action="store_true",
        help="also run the words reversed: with no positions the outputs only move",
    )
    parser.add_argument("--d-model", type=int, default=8, help="embedding size (default 8)")
    parser.add_argument(
        "--d-k", type=int, help="size of each head's query/key/value (default 4; d_model / heads)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default 0)"
    )
    parser.add_argument("--lang", help="en or es (default: from the locale, LANG=es_* is Spanish)")
    parser.add_argument(
        "--png",
        default="attention_steps.png",
        help="where to write the heatmap (default attention_steps.png; a PNG atenea drew there "
        "is replaced, any other file only with --overwrite)",
    )
    parser.add_argument("--no-png", action="store_true", help="do not write the heatmap")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a --png file atenea did not draw"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from atenea.cli.outputs import picture_output

    try:
        if not args.no_png:
            count = 2 if args.model is not None and args.compare else 1  # --compare: _1, _2
            try:  # before the steps print: a picture cannot go to out.csv, nor over mine.png
                args.png = picture_output(args.png, args.overwrite, lambda path: [
                    steps_more.numbered(path, i, count) for i in range(count)])  # fmt: skip
            except ValueError as error:
                raise StepsError(str(error)) from None
        lang = pick_language(args.lang)
        if args.model is None:
            for flag, value in (
                ("--layer", args.layer),
                ("--head", args.head),
                ("--compare", args.compare),
            ):
                if value is not None:
                    raise StepsError(f"{flag} needs --model (a real model)")
            run_steps(
                args.text,
                causal=args.causal,
                d_model=args.d_model,
                d_k=args.d_k,
                seed=args.seed,
                heads=args.heads,
                positions=args.positions,
                permute=args.permute,
                png=None if args.no_png else args.png,
                lang=lang,
            )
        else:
            # a real model brings its own sizes and weights: these flags would do nothing
            for flag, value, default in (
                ("--d-model", args.d_model, 8),
                ("--d-k", args.d_k, None),
                ("--seed", args.seed, 0),
            ):
                if value != default:
                    raise StepsError(f"{flag} is for random weights; --model brings its own")
            steps_more.run_model(args, lang, print_steps)
    except (LessonError, LanguageError, OSError) as error:
        return fail("steps", error)
    return 0


def check_words(text: str) -> list[str]:
    tokens = text.split()
    if not tokens:
        raise StepsError('give at least one word, e.g. atenea steps "el banco cerró temprano"')
    if len(tokens) > MAX_TOKENS:
        raise StepsError(
            f"{len(tokens)} words is too many to print as matrices; give at most {MAX_TOKENS}"
        )
    return tokens


def run_steps(
    text: str | None = None,
    *,
    causal: bool = False,
    d_model: int = 8,
    d_k: int | None = None,
    seed: int = 0,
    heads: int = 1,
    positions: str = "none",
    permute: bool = False,
    png: str | Path | None = "attention_steps.png",
    lang: str = "en",
    echo=print,
) -> dict[str, torch.Tensor]:
    """Print the seven steps on random weights for ``text``; return every tensor by name."""
    tokens = check_words(say(lang, "default_text") if text is None else text)
    if not 1 <= heads <= 8:
        raise StepsError(f"--heads must lie in 1..8, got {heads}")
    if heads > 1:  # the heads share d_model between them
        if d_model % heads or (d_k is not None and d_k * heads != d_model):
            raise StepsError(
                f"--heads {heads} splits d_model = {d_model} into equal parts: give a --d-model "
                f"that {heads} divides (and no --d-k, or d_model / heads)"
            )
        d_k = d_model // heads
    d_k = 4 if d_k is None else d_k
    if not 1 <= d_model <= 64 or not 1 <= d_k <= 64:
        raise StepsError(f"--d-model and --d-k must lie in 1..64, got {d_model} and {d_k}")
    lesson = random_lesson(
        tokens,
        d_model=d_model,
        d_k=d_k,
        num_heads=heads,
        seed=seed,
        causal=causal,
        positions=positions,
    )
    echo(say(lang, "title"))
    echo(say(lang, "random_weights", seed=seed))
    tensors = print_steps(lesson, lang, png, echo, positions=positions)
    library = atenea.attention(
        *(tensors[n][None, None] for n in ("q", "k", "v")), mask=masks.causal() if causal else None
    )[0, 0]
    difference = float((library - tensors["y"]).abs().max())
    mask = ", mask=masks.causal()" if causal else ""
    echo(say(lang, "check_random", mask=mask, difference=difference))
    tensors.update(x=lesson.x, library=library)
    if heads > 1:
        tensors.update(steps_more.print_multi_head(lesson, lang, echo))
    if permute:
        tensors.update(steps_more.print_permutation(lesson, positions, lang, echo))
    return tensors


def print_steps(
    lesson: Lesson, lang: str, png, echo=print, positions: str = "none", model: bool = False
) -> dict:
    """Print steps 1 to 7 of ``lesson``'s head (and write the heatmap); return its tensors.
    ``model``: the head is a trained model's (whose mask is its own: no --causal to try)."""
    tokens, length, d_model, d_k = lesson.tokens, len(lesson.tokens), lesson.x.shape[1], lesson.d_k
    t = seven_steps(lesson)
    echo(say(lang, "tokens", tokens=" | ".join(tokens), length=length, d_model=d_model, d_k=d_k))
    echo("")
    dims, kdims = [f"d{i}" for i in range(d_model)], [f"d{i}" for i in range(d_k)]

    echo(say(lang, "step1", length=length, d_model=d_model))
    if lesson.source != "random":
        if lesson.layer > 0:
            source = say(lang, "source_previous", previous=lesson.layer - 1)
        else:
            source = say(lang, "source_embeddings_rope" if lesson.rotary else "source_embeddings")
        norm = say(lang, "norm_first") if lesson.norm_first else ""
        echo(say(lang, "model_input", layer=lesson.layer, source=source, norm=norm))
    elif lesson.position_table is not None:
        echo(say(lang, "table_positions", kind=positions))
        echo("E\n" + format_matrix(lesson.embeddings, tokens, dims))
        echo("P\n" + format_matrix(lesson.position_table, tokens, dims))
        echo("X0 = E + P")
    else:
        echo(say(lang, "rope_positions" if lesson.rotary is not None else "no_positions"))
    echo(format_matrix(lesson.x, tokens, dims))
    echo("")

    echo(say(lang, "step2", length=length, d_k=d_k))
    if lesson.b_q is not None:
        echo(say(lang, "bias_note"))
    if lesson.rotary is not None:
        echo(say(lang, "rope_note"))
    for key, name in (("q", "q"), ("k", "k"), ("v", "v")):
        echo(say(lang, name))
        echo(format_matrix(t[key], tokens, kdims))
    echo("")

    echo(say(lang, "step3", length=length))
    echo(format_matrix(t["scores"], tokens, tokens))
    echo(say(lang, "scaled", root=math.sqrt(d_k)))
    echo(format_matrix(t["scaled"], tokens, tokens))
    echo("")

    allowed = t["allowed"]
    if lesson.causal:
        echo(say(lang, "step4_causal"))
        echo(format_matrix(allowed.float(), tokens, tokens, digits=0))
        echo(say(lang, "masked"))
        echo(format_matrix(t["masked"], tokens, tokens))
        for i, token in enumerate(tokens):
            seen = ", ".join(tokens[j] for j in range(length) if allowed[i, j] and j != i)
            echo(say(lang, "sees" if seen else "sees_self", token=token, seen=seen))
    else:
        echo(say(lang, "step4_model" if model else "step4_none"))
    echo("")

    weights, sums = t["weights"], t["weights"].sum(-1)
    echo(say(lang, "step5"))
    echo(format_matrix(weights, tokens, tokens, digits=3))
    ok = bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5))
    echo(
        say(
            lang,
            "row_sums",
            sums=", ".join(f"{s:.6f}" for s in sums.tolist()),
            verdict=say(lang, "sums_ok" if ok else "sums_bad"),
        )
    )
    echo("")

    echo(say(lang, "step6", length=length, d_k=d_k))
    echo(format_matrix(t["y"], tokens, kdims))
    echo(say(lang, "head_output", length=length, d_model=d_model))
    echo("")

    echo(say(lang, "step7"))
    for i, token in enumerate(tokens):
        top = torch.topk(weights[i], k=min(3, int(allowed[i].sum())))
        parts = [f"{tokens[j]} {w:.2f}" for w, j in zip(top.values.tolist(), top.indices.tolist())]
        echo(f"        {token:<12} -> " + ", ".join(parts))
    if png is not None:
        write_heatmap(weights, tokens, allowed, png, lang, echo)
    echo("")
    return t


def write_heatmap(weights, tokens, allowed, png, lang: str, echo) -> None:
    title = say(lang, "heatmap_title" if bool(allowed.all()) else "heatmap_title_masked")
    axes = tuple(say(lang, "heatmap_axes").split("|"))
    try:
        written = heatmap_png(
            weights, tokens, png, title, allowed=allowed, show_values=True, vmax=1.0,
            axis_labels=axes,
        )  # fmt: skip
    except ImportError:
        echo(say(lang, "no_matplotlib"))
    except OSError as error:
        raise StepsError(f"cannot write the heatmap to {png}: {error.strerror or error}") from None
    else:
        echo(say(lang, "heatmap", path=written))
