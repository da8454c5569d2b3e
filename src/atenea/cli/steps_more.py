"""The parts of ``atenea steps`` past one head on random weights: a real model's head (chosen by
the head descriptors unless ``--layer``/``--head`` say), two sentences compared, every head of
a layer side by side, and the order experiment of ``--permute``."""

from __future__ import annotations

import torch

from atenea.cli.tables import format_matrix
from atenea.inspect.analysis import top_targets
from atenea.inspect.capture import capture
from atenea.inspect.explain import explain, notable_heads, strongest_link
from atenea.inspect.lang import say
from atenea.inspect.lesson import (
    Lesson,
    LessonError,
    attention_layers_of,
    model_lesson,
    module_output,
    permutation_check,
    split_heads,
)
from atenea.models import CheckpointError, load_pretrained

MAX_MODEL_TOKENS = 32  # an L x L table wider than this does not fit a terminal
RESTING = ("special", "first")  # patterns of heads that park their attention: little to see


def run_model(args, lang: str, print_steps) -> dict:
    """``atenea steps --model ...``: the seven steps on one head of a real model, for the text
    and, with ``--compare``, a second one; ``--heads`` shows the whole layer."""
    if args.positions != "none":
        raise LessonError("--positions is for random weights: a model brings its own positions")
    if args.permute:
        raise LessonError("--permute is for random weights: a model's X already mixes the context")
    if args.causal:
        raise LessonError(
            "--causal is for random weights: a model has its own mask (a decoder is causal)"
        )
    if args.head is not None and args.layer is None:
        raise LessonError("--head needs --layer")
    texts = [args.text or say(lang, "default_text")] + ([args.compare] if args.compare else [])
    for text in texts:
        if not text.strip():
            raise LessonError("give a non-empty text")
    try:
        model, tokenizer = load_pretrained(args.model)
    except CheckpointError as error:
        raise LessonError(f"--model {args.model}: {error}") from None
    if tokenizer is None:
        raise LessonError(f"--model {args.model}: the checkpoint has no tokenizer.json")
    model.eval()
    name = "all-MiniLM-L6-v2" if args.model == "minilm" else str(args.model)
    num_heads = attention_layers_of(model, args.model).layers[0].attention.num_heads
    if args.heads not in (1, num_heads):
        raise LessonError(f"--heads {args.heads}: this model's layers have {num_heads} heads")
    for text in texts:  # before anything is printed
        count = tokenizer(text)["input_ids"].shape[1]
        if count > MAX_MODEL_TOKENS:
            raise LessonError(
                f"{count} tokens is too many to print as matrices; give at most {MAX_MODEL_TOKENS}"
            )
    focus = args.focus or (_shared_word(texts, tokenizer) if len(texts) > 1 else None)
    layer, head, reason = _choose_head(model, tokenizer, texts, args.layer, args.head, focus, lang)
    results = []
    print(say(lang, "title"))
    for text in texts:
        lesson = model_lesson(model, tokenizer, text, layer, head, name)
        print(say(lang, "model_weights", name=name, layer=layer, head=head, heads=lesson.num_heads))
        if reason:
            print(say(lang, "why_head", reason=reason))
        png = None if args.no_png else numbered(args.png, len(results), len(texts))
        tensors = print_steps(lesson, lang, png, model=True)
        ids = tokenizer(text)["input_ids"]
        own = capture(model, ids, layers=[layer], heads=[head])[0, 0]
        difference = float((own - tensors["weights"]).abs().max())
        print(say(lang, "check_model", layer=layer, head=head, difference=difference))
        if args.heads > 1:
            print_multi_head(lesson, lang, print, module=_attention_module(model, layer))
        results.append((text, lesson, tensors))
        print("")
    if focus is not None and len(results) > 1:
        print(say(lang, "compare_title", word=focus, layer=layer, head=head))
        for text, lesson, tensors in results:
            index = _find(lesson.tokens, focus)
            row = tensors["weights"][index] if index is not None else None
            targets = (
                "-"
                if row is None
                else ", ".join(
                    f"{token} {weight:.2f}"
                    for _, token, weight in top_targets(row, lesson.tokens, 3)
                )
            )
            print(say(lang, "compare_line", text=text, targets=targets))
    return {"results": results, "layer": layer, "head": head}


def _attention_module(model, layer: int):
    return attention_layers_of(model, "").layers[layer].attention


def numbered(png: str, index: int, count: int) -> str:
    if count == 1:
        return png
    stem, dot, suffix = str(png).rpartition(".")
    return f"{stem}_{index + 1}.{suffix}" if dot else f"{png}_{index + 1}"


def _find(tokens: list[str], word: str) -> int | None:
    wanted = word.strip().lower()
    for index, token in enumerate(tokens):
        if token.lower() == wanted:
            return index
    return None


def _shared_word(texts: list[str], tokenizer) -> str | None:
    """The first ordinary token of the first text that the second one also has (prefer longer
    words: "bank" before "the")."""
    from atenea.inspect.tokens import token_labels

    lists = [token_labels(tokenizer, tokenizer(t)["input_ids"][0]) for t in texts]
    (first, special), (second, _) = lists
    shared = [tok for tok, flag in zip(first, special) if not flag and tok in second]
    shared = [tok for tok in shared if tok.isalpha()] or shared
    return max(shared, key=len) if shared else None


def _choose_head(model, tokenizer, texts, layer, head, focus, lang):
    """``(layer, head, reason)``: the given head, or one the descriptors pick.

    - Two texts sharing the focus word: among the heads the descriptors say attend by content,
      the one whose attention from that word rests most on the other ordinary words in both.
    - One text with a focus word: the head that moves its attention most to another word
      (``strongest_link``).
    - Otherwise the clearest named pattern that is not a resting head (``notable_heads``).
    """
    if layer is not None and head is not None:
        return layer, head, ""
    with torch.no_grad():
        found = [explain(text, model, tokenizer, focus=focus if _has(text, tokenizer, focus)
                         else None) for text in texts]  # fmt: skip
    e = found[0]
    layers = e.maps.shape[0]
    if layer is not None and not 0 <= layer < layers:
        raise LessonError(f"--layer {layer}: this model has layers 0..{layers - 1}")
    if len(found) > 1 and all(x.focus is not None for x in found):
        share = torch.stack([_context_share(x) for x in found]).amin(0)  # (layers, heads)
        for d in e.descriptions:  # positional heads (previous/next token...) say little here
            if d.pattern not in ("content", "broad"):
                share[d.layer, d.head] -= 1
        if layer is not None:
            share = share[layer : layer + 1]
        best = int(share.flatten().argmax())
        best_layer, best_head = divmod(best, share.shape[1])
        best_layer = best_layer if layer is None else layer
        reason = say(lang, "compare_reason", word=e.tokens[e.focus], share=float(share.max()) % 1)
        return best_layer, best_head, reason
    if e.focus is not None and layer is None:
        best_layer, best_head, j, share = strongest_link(e)
        if j is not None:
            word = e.tokens[e.focus]
            return (
                best_layer,
                best_head,
                say(lang, "head_link", share=share, word=word, target=e.tokens[j]),
            )
    candidates = [d for d in e.descriptions if layer is None or d.layer == layer]
    ranked = [d for d in notable_heads(e, len(e.descriptions)) if d in candidates]
    lively = [d for d in ranked if d.pattern not in RESTING] or ranked or candidates
    chosen = lively[0]
    return chosen.layer, chosen.head, chosen.text


def _context_share(e) -> torch.Tensor:
    """``(layers, heads)``: the weight the focus token gives to ordinary tokens other than
    itself (not [CLS], [SEP] or itself)."""
    rows = e.focus_rows.clone()  # (layers, heads, L)
    rows[..., e.focus] = 0
    rows[..., torch.tensor(e.special, dtype=torch.bool)] = 0
    return rows.sum(-1)


def _has(text: str, tokenizer, word: str | None) -> bool:
    if word is None:
        return False
    from atenea.inspect.tokens import token_labels

    tokens, _ = token_labels(tokenizer, tokenizer(text)["input_ids"][0])
    return _find(tokens, word) is not None


def print_multi_head(lesson: Lesson, lang: str, echo=print, module=None) -> dict:
    """The split of d_model into heads, every head's weights side by side, the concatenation
    and W_O; checked against ``atenea.nn.MultiHeadAttention`` on the same weights."""
    heads, d_k, tokens = lesson.num_heads, lesson.d_k, lesson.tokens
    d_model, width, length = lesson.x.shape[1], lesson.w_q.shape[1], len(tokens)
    parts = split_heads(lesson)
    echo(say(lang, "multi_title", d_model=d_model, heads=heads, d_k=d_k))
    echo(say(lang, "multi_split", d_k=d_k, last=d_k - 1))
    echo(say(lang, "multi_weights"))
    tables = [format_matrix(w, tokens, tokens, digits=3).splitlines() for w in parts["weights"]]
    span = max(len(line) for table in tables for line in table)
    per_row = max(1, 130 // (span + 3))  # as many as fit a wide terminal
    for start in range(0, heads, per_row):
        group = range(start, min(heads, start + per_row))
        echo("   ".join(say(lang, "head_label", head=h).ljust(span) for h in group))
        for lines in zip(*(tables[h] for h in group)):
            echo("   ".join(line.ljust(span) for line in lines))
    echo(say(lang, "multi_concat", last=heads - 1, length=length, width=width, d_model=d_model))
    echo(format_matrix(parts["output"], tokens, [f"d{i}" for i in range(d_model)]))
    expected = module_output(lesson, module)
    difference = float((expected - parts["output"]).abs().max())
    echo(say(lang, "check_multi", difference=difference))
    echo("")
    return {"multi_output": parts["output"], "module_output": expected}


def print_permutation(lesson: Lesson, positions: str, lang: str, echo=print) -> dict:
    """The words reversed: without positions the outputs are the same rows reordered."""
    order = list(reversed(range(len(lesson.tokens))))
    echo(say(lang, "permute_title", tokens=" | ".join(lesson.tokens[i] for i in order)))
    check = permutation_check(lesson, order)
    if positions == "none" and not lesson.causal:
        echo(say(lang, "permute_none", difference=check["equivariance"]))
    elif positions == "none":  # the order shows through the mask alone
        echo(say(lang, "permute_causal_only", difference=check["equivariance"],
                 largest=check["largest"]))  # fmt: skip
    else:
        echo(
            say(
                lang,
                "permute_positions",
                kind=positions,
                difference=check["equivariance"],
                largest=check["largest"],
            )
        )
        if lesson.causal:
            echo(say(lang, "permute_causal"))
    return {"permutation": check}
