"""Where a retrieval-augmented prompt's question looks: the attention its tokens pay to each
retrieved passage, to the question itself, and to the separators.

    prompt = [start] passage 1 [sep] passage 2 [sep] ... question [end]
    share(layer, part) = mean over the question's tokens and the heads of the attention mass
                         on the part's tokens            (each row sums to 1 over the parts)

The weights are captured on the fast path (``inspect.capture``), only for the question's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.inspect.capture import capture
from atenea.inspect.tokens import ExplainError


@dataclass
class PassageAttention:
    """``labels``: the parts (``passage 1`` .. ``passage k``, ``question``, ``separators``);
    ``shares (layers, parts)``: the question's attention mass on each part, per layer;
    ``spans``: each passage's and the question's ``(start, end)`` token range."""

    labels: list[str]
    shares: Tensor
    spans: list[tuple[int, int]]

    @property
    def mean(self) -> Tensor:
        """``(parts,)``: the shares averaged over the layers."""
        return self.shares.mean(0)


def _special(tokenizer, *roles: str) -> list[int]:
    for role in roles:
        token_id = tokenizer.token_id(role)
        if token_id is not None:
            return [token_id]
    return []


def prompt_ids(tokenizer, passages: list[str], question: str,
               limit: int) -> tuple[list[int], list[tuple[int, int]]]:  # fmt: skip
    """The prompt's ids and the ``(start, end)`` span of every passage, then the question.
    Passages share what the question leaves of ``limit`` tokens (each cut alike)."""
    start, sep = _special(tokenizer, "cls", "bos"), _special(tokenizer, "sep", "eos")
    asked = tokenizer.encode(question, add_special_tokens=False)
    if not asked:
        raise ExplainError("question: no tokens; give the text to ask")
    room = limit - len(asked) - len(start) - len(sep) * (len(passages) + 1)
    each = room // max(len(passages), 1)
    if passages and each < 1:  # the question (and the special tokens) fill the limit
        raise ExplainError(
            f"max_tokens: the question takes {len(asked)} of the {limit} tokens, leaving no "
            f"room for {len(passages)} passages; give more tokens or a shorter question"
        )
    ids, spans = list(start), []
    for passage in passages:
        piece = tokenizer.encode(passage, add_special_tokens=False)[:each]
        spans.append((len(ids), len(ids) + len(piece)))
        ids += piece + sep
    spans.append((len(ids), len(ids) + len(asked)))
    return ids + asked + sep, spans


@torch.no_grad()
def attention_to_passages(model, tokenizer, passages: list[str], question: str,
                          limit: int = 512) -> PassageAttention:  # fmt: skip
    """The question's attention to each passage and to itself (see the module docstring)."""
    ids, spans = prompt_ids(tokenizer, passages, question, limit)
    first, last = spans[-1]
    device = next(model.parameters()).device
    weights = capture(model, torch.tensor([ids], device=device), rows=list(range(first, last)))
    mass = weights.mean(dim=(1, 2))  # (layers, L): heads and question rows averaged
    parts = [mass[:, a:b].sum(-1) for a, b in spans]
    parts.append(mass.sum(-1) - sum(parts))  # what is left: start / separator tokens
    labels = [f"passage {i + 1}" for i in range(len(passages))] + ["question", "separators"]
    return PassageAttention(labels, torch.stack(parts, dim=1), spans)
