"""``atenea explain --model RUN`` for a recurrent translator (``--arch rnnsearch``): the
alignment of each generated word to the source words (Bahdanau et al.'s Figure 3), in the
terminal, in the HTML report and, with ``--png``, as ``alignment.png``."""

from __future__ import annotations

from pathlib import Path

from atenea.cli.outputs import planned
from atenea.inspect import plots
from atenea.inspect.alignment import explain_alignment
from atenea.inspect.explain_lang import alignment_summary
from atenea.inspect.lang import pick_language
from atenea.inspect.tokens import ExplainError


def run_alignment(args, model, tokenizer, texts: list[str], out: Path, write_outputs) -> int:
    """``explain`` for an RNNSearch model; ``write_outputs`` is explain's report writer."""
    for flag, value in (("--focus", args.focus), ("--pair", args.pair)):
        if value is not None:
            raise ExplainError(f"{flag} is for encoder and decoder models; this is a recurrent "
                               "translator (give the target with --target)")  # fmt: skip
    for flag, value in (("--layer", args.layer), ("--head", args.head)):
        if value not in (None, 0):
            raise ExplainError(f"{flag} {value}: RNNsearch has one attention (layer 0, head 0)")
    explanations = [
        explain_alignment(text, model, tokenizer, target=args.target,
                          max_new_tokens=args.max_new_tokens, max_tokens=args.max_tokens)
        for text in texts
    ]  # fmt: skip
    name = f"{args.model} ({type(model).__name__}, score={model.config.score})"
    lang = pick_language(getattr(args, "lang", None))
    print("\n".join(alignment_summary(explanations, name, lang)))
    write_outputs(args, explanations, name, out, _pictures)
    return 0


def _pictures(explanations, initial: dict, folder: Path, title: str) -> list:
    """``alignment.png`` (``alignment_{i}.png`` with ``--compare``): generated tokens down the
    side, source tokens along the top (planned: ``(path, draw)`` pairs, as explain's)."""
    plans = []
    for index, e in enumerate(explanations):
        suffix = f"_{index + 1}" if len(explanations) > 1 else ""
        plans.append(
            planned(folder / f"alignment{suffix}.png", plots.heatmap_png, e.alignment,
                    e.output_tokens, title=f"{e.text[:50]} -> {e.target[:50]}",
                    key_tokens=e.source_tokens)
        )  # fmt: skip
    return plans


def draw_rnn_alignments(model, tokenizer, folder: Path, sources: list[str]) -> list[Path]:
    """``atenea train``'s pictures of a finished recurrent run:
    ``folder/alignments/alignment-{i}.png`` for RNNSearch, nothing for RNNEncDec (no
    attention)."""
    if not model.attention:
        return []
    paths = []
    for i, source in enumerate(sources):
        e = explain_alignment(source, model, tokenizer)
        title = f"{source[:60]!r} -> {e.target[:60]!r}\nRNNsearch alignment"
        path = folder / "alignments" / f"alignment-{i}.png"
        paths.append(
            plots.heatmap_png(e.alignment, e.output_tokens, path, title, key_tokens=e.source_tokens)
        )
    return paths
