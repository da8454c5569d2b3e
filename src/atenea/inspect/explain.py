"""``explain``: one text through a model, its attention read four ways (per head, per layer,
rolled out, described in words), ready for the terminal, an HTML report
(``atenea.inspect.report``) or PNG files (``atenea.inspect.plots``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from atenea.inspect.analysis import HeadDescription, rollout, top_targets
from atenea.inspect.capture import base_model, record, scan
from atenea.inspect.focus import find_focus
from atenea.inspect.tokens import REPORT_MAX_CELLS, ExplainError, check_text, token_labels
from atenea.models.decoder import DecoderModel
from atenea.models.encoder_decoder import EncoderDecoderModel


@dataclass
class Explanation:
    """Everything ``explain`` found for one text.

    ``maps (layers, heads, n, n)``: every head's weights, ``n = L`` tokens, or for long inputs
    ``n`` blocks of ``block`` tokens (see ``capture.scan``); ``rollout (n, n)`` likewise;
    ``focus_rows (layers, heads, L)``: the focus token's exact weights.
    """

    text: str
    tokens: list[str]
    special: list[bool]
    maps: Tensor
    rollout: Tensor
    descriptions: list[HeadDescription]
    causal: bool
    block: int = 1
    focus: int | None = None
    focus_rows: Tensor | None = None
    notice: str | None = None
    segments: list[int] | None = None
    summary: list[str] = field(default_factory=list)

    @property
    def cell_tokens(self) -> list[str]:
        """Labels of the map's rows/columns: the tokens, or the first token of each block."""
        if self.block == 1:
            return self.tokens
        return [f"{self.tokens[s]}…" for s in range(0, len(self.tokens), self.block)]


def explain(
    text: str,
    model,
    tokenizer,
    *,
    pair: str | None = None,
    focus: str | None = None,
    max_tokens: int | None = None,
) -> Explanation:
    """Tokenize ``text`` (and a second sentence ``pair`` for BERT-style models), run the model
    once, capture every layer's and head's attention from the log-sum-exp, and analyse it."""
    check_text(text)
    base = base_model(model)
    if isinstance(base, EncoderDecoderModel):
        raise ExplainError(
            "this is an encoder-decoder model: use atenea.inspect.explain_seq2seq (source and "
            "target)"
        )
    causal = isinstance(base, DecoderModel)
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ExplainError(f"max_tokens: expected an integer >= 1, got {max_tokens!r}")
    added = tokenizer.special_count(pair is not None)
    if max_tokens is not None and max_tokens <= added:
        raise ExplainError(
            f"max_tokens: {max_tokens} cannot hold a token of the text besides the {added} "
            f"special tokens around it; use at least {added + 1}"
        )
    limit = max_tokens or tokenizer.model_max_length or _model_limit(base)
    full = tokenizer(text, pair, truncation=False)
    batch = tokenizer(text, pair, max_length=limit) if limit else full
    notice = None
    if full["input_ids"].shape[1] > batch["input_ids"].shape[1]:
        notice = (
            f"The text has {full['input_ids'].shape[1]} tokens; the model reads at most {limit}, "
            f"so it was cut to the first {batch['input_ids'].shape[1]}."
        )
    ids = batch["input_ids"]
    tokens, special = token_labels(tokenizer, ids[0])
    focus_index = None if focus is None else find_focus(tokenizer, text, pair, focus, tokens)
    records = record(model, ids, batch["attention_mask"], batch.get("token_type_ids")).attention
    # Past REPORT_MAX_CELLS tokens the maps are pooled into blocks (exact numbers per block).
    maps, descriptions, focus_rows, block = scan(records, special, REPORT_MAX_CELLS, focus_index)
    if block > 1:
        pooled = (
            f"The {len(tokens)} tokens are grouped in blocks of {block}: each row of a map is the "
            f"attention of its block's middle token, summed over each block of keys."
        )
        notice = f"{notice} {pooled}" if notice else pooled
    explanation = Explanation(
        text=text if pair is None else f"{text} ‖ {pair}",
        tokens=tokens, special=special, maps=maps, rollout=rollout(maps).float(),
        descriptions=descriptions, causal=causal, block=block, focus=focus_index,
        focus_rows=focus_rows, notice=notice,
        segments=batch["token_type_ids"][0].tolist() if pair is not None else None,
    )  # fmt: skip
    explanation.summary = summary_lines(explanation)
    return explanation


def _model_limit(model) -> int | None:
    config = model.config
    learned = getattr(config, "positions", "learned") == "learned"
    return config.max_positions if learned else None


def _targets(row: Tensor, tokens: list[str], k: int = 3) -> str:
    return ", ".join(f"{token} {weight:.2f}" for _, token, weight in top_targets(row, tokens, k))


def summary_lines(e: Explanation) -> list[str]:
    """The focus token's strongest targets per layer (heads averaged), in the rollout, and the
    head that moves it most to another word."""
    if e.focus is None:
        return []
    word = e.tokens[e.focus]
    lines = [f"layer {layer}: {word} -> {_targets(rows.mean(0), e.tokens)}"
             for layer, rows in enumerate(e.focus_rows)]  # fmt: skip
    blocks = "" if e.block == 1 else f" (blocks of {e.block} tokens)"
    lines.append(
        f"rollout{blocks}: {word} -> {_targets(e.rollout[e.focus // e.block], e.cell_tokens)}"
    )
    layer, head, j, weight = strongest_link(e)
    if j is not None:
        lines.append(
            f"strongest link beyond the neighbours: L{layer} H{head} gives {weight:.0%} of the "
            f'attention of "{word}" to "{e.tokens[j]}"'
        )
    return lines


def strongest_link(e: Explanation) -> tuple[int, int, int | None, float]:
    """The (layer, head) whose weight from the focus token to one ordinary token further than
    its neighbours (not itself, not next to it, not a special token) is the largest: the
    links that carry meaning rather than position."""
    if e.focus is None:
        return 0, 0, None, 0.0
    rows = e.focus_rows.clone()  # (layers, heads, L)
    rows[..., max(e.focus - 1, 0) : e.focus + 2] = 0
    rows[..., torch.tensor(e.special, dtype=torch.bool)] = 0
    flat = int(rows.flatten().argmax())
    layers, heads, length = rows.shape
    layer, rest = divmod(flat, heads * length)
    head, j = divmod(rest, length)
    weight = float(rows[layer, head, j])
    return layer, head, (j if weight > 0 else None), weight


def notable_heads(e: Explanation, count: int = 6) -> list[HeadDescription]:
    """Heads with the clearest named pattern (previous/next/self/special/first token): the
    strongest of each pattern first, then the next strongest overall."""
    named = [d for d in e.descriptions if d.pattern not in ("broad", "content")]

    def strength(d: HeadDescription) -> float:
        return {"previous": d.previous_share, "next": d.next_share, "self": d.self_share,
                "special": d.special_share, "first": d.first_share}[d.pattern]  # fmt: skip

    ranked = sorted(named, key=strength, reverse=True)
    best_of_each = [next(d for d in ranked if d.pattern == p) for p in dict.fromkeys(
        d.pattern for d in ranked)]  # fmt: skip
    rest = [d for d in ranked if d not in best_of_each]
    return (best_of_each + rest)[:count]
