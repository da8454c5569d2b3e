"""The pictures of a finished ``atenea train`` run, drawn from what the library wrote in its
folder: the training curves, a translator's alignments, an image classifier's confusion
matrix."""

from __future__ import annotations

from pathlib import Path

CURVES = "curves.png"
ALIGNMENTS = 4  # translate: alignment pictures drawn after training


def draw_run(out: Path, task) -> list[Path]:
    """Draw a finished run from what the library wrote in ``out``: ``curves.png`` from
    ``metrics.jsonl``, and for translate the alignments of a few validation sources."""
    from atenea.inspect.plots import training_curves_png
    from atenea.training.metrics_log import read_metrics

    paths = [training_curves_png(read_metrics(out), task.main_metric, out / CURVES)]
    if task.name == "translate":
        paths += draw_alignments(out, task.example_inputs(ALIGNMENTS))
    if task.name == "images":
        paths.append(draw_confusion(out, task))
    return paths


def draw_confusion(folder: Path, task) -> Path:
    """``folder/confusion.png``: the trained model's confusion matrix on the validation set."""
    from atenea.inspect.plots import confusion_png
    from atenea.models import load_pretrained

    model, _ = load_pretrained(folder)
    path, title = folder / "confusion.png", "validation confusion matrix"
    return confusion_png(task.confusion(model), task.info["labels"], path, title)


def draw_alignments(folder: Path, sources: list[str]) -> list[Path]:
    """``folder/alignments/alignment-{i}.png``: for each source, the trained model's greedy
    translation and the cross-attention that wrote it (heads averaged) in the decoder layer whose
    rows are sharpest: the layer that does the aligning (usually the last; the title says).
    Rows: each generated token (the row that wrote it); columns: the source tokens."""
    from atenea.cli.explain_rnn import draw_rnn_alignments
    from atenea.inspect import explain_seq2seq
    from atenea.inspect.plots import heatmap_png, title_text
    from atenea.models import RNNTranslator, load_pretrained

    model, tokenizer = load_pretrained(folder)
    model.eval()
    if isinstance(model, RNNTranslator):  # RNNsearch: its alignment; RNNencdec has none
        return draw_rnn_alignments(model, tokenizer, folder, sources)
    paths = []
    for i, source in enumerate(sources):
        found = explain_seq2seq(source, model, tokenizer)
        layer = found.sharpest_layer
        # Layers numbered from 0, as atenea explain --layer and its L0, L1 ... count them.
        title = (
            f"{title_text(repr(source), 40)} -> {title_text(repr(found.target), 40)}\n"
            f"cross-attention, decoder layer L{layer} (of L0..L{len(found.cross_maps) - 1}), "
            f"heads averaged"
        )
        path = folder / "alignments" / f"alignment-{i}.png"
        weights = found.cross_maps[layer].mean(0)  # (T, S)
        paths.append(
            heatmap_png(weights, found.output_tokens, path, title, key_tokens=found.source_tokens)
        )
    return paths
