"""``explain`` for RNNsearch: the alignment matrix of one translation, Bahdanau et al.'s
Figure 3 -- the generated words down the side, the source words along the top, each row the
weights ``alpha_ij`` with which the decoder read the source while writing word ``i``.

RNNsearch has one attention (one layer, one head), no self-attention and so no rollout; the
RNN encoder-decoder without attention has nothing to draw (``explain_alignment`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from atenea.inspect.analysis import HeadDescription, top_targets
from atenea.inspect.seq2seq import DEFAULT_MAX_NEW_TOKENS, describe_cross, source_and_target
from atenea.inspect.tokens import ExplainError, plain, token_labels
from atenea.models.rnn import RNNTranslator

CAPTION = (
    "alignment (Bahdanau et al. 2015, Figure 3): each generated token (row) over the source "
    "tokens (columns), the weights the decoder read the source with while writing it. RNNsearch "
    "has this one attention and no layers of self-attention, so there is no rollout."
)


@dataclass
class AlignmentExplanation:
    """What ``explain_alignment`` found for one source: ``alignment (T, S)`` float32, row ``i``
    the step that produced ``output_tokens[i]``."""

    text: str
    target: str
    generated: bool
    source_tokens: list[str]
    source_special: list[bool]
    output_tokens: list[str]
    alignment: Tensor
    description: HeadDescription
    notice: str | None = None
    summary: list[str] = field(default_factory=list)

    @property
    def maps(self) -> Tensor:
        """``(1, 1, T, S)``: the alignment as a one-layer, one-head map."""
        return self.alignment[None, None]


def explain_alignment(
    text: str,
    model: RNNTranslator,
    tokenizer,
    *,
    target: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    max_tokens: int | None = None,
) -> AlignmentExplanation:
    """Tokenize the source ``text`` as ``atenea generate`` does, take ``target`` (tokenized
    without special tokens, between BOS and EOS) or translate greedily (at most
    ``max_new_tokens``), and run the model once on the pair to read its alignment."""
    if not model.attention:
        raise ExplainError(
            f"{type(model).__name__} has no attention: its decoder reads one fixed summary of the "
            f"source at every step, so there is no alignment to draw (RNNSearch has one)"
        )
    pair = source_and_target(text, model, tokenizer, target, max_new_tokens, max_tokens, None)
    src_ids, src_mask, decoder_ids, output_ids = pair.tensors
    notice = pair.notice
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(src_ids.to(device), decoder_ids[None].to(device), src_mask.to(device),
                    output_attentions=True)  # fmt: skip
    alignment = out.cross_attentions[0][0, 0].float().cpu()  # (T, S)
    source_tokens, source_special = token_labels(tokenizer, src_ids[0])
    output_tokens, _ = token_labels(tokenizer, output_ids)
    explanation = AlignmentExplanation(
        text=text, target=tokenizer.decode(output_ids), generated=target is None,
        source_tokens=source_tokens, source_special=source_special, output_tokens=output_tokens,
        alignment=alignment, description=describe_cross(alignment[None, None], source_special)[0],
        notice=notice,
    )  # fmt: skip
    explanation.summary = alignment_lines(explanation)
    return explanation


def alignment_lines(e: AlignmentExplanation, k: int = 3, mark=plain) -> list[str]:
    """For each generated token, the source tokens it read most. ``mark(token)`` wraps every
    token (``tokens.isolate`` for the HTML report)."""
    width = min(max(len(t) for t in e.output_tokens), 16)
    lines = []
    for t, token in enumerate(e.output_tokens):
        best = ", ".join(
            f"{mark(s)} {w:.2f}" for _, s, w in top_targets(e.alignment[t], e.source_tokens, k)
        )
        lines.append(f"{mark(f'{token:>{width}}')} -> {best}")
    return lines
