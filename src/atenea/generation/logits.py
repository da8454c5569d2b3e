"""From next-token scores to the next token: penalties, warpers, and the choice itself.

The order is Hugging Face's, so the same options give the same distribution:

    repetition penalty (every strategy)
    -> temperature -> top-k -> top-p -> min-p   (sampling only)
    -> argmax (greedy) or a draw from softmax (sampling)

All functions take ``scores (N, V)`` float32 and return new scores; removed tokens get ``-inf``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.generation.config import GenerationConfig

NEG_INF = float("-inf")


def repetition_penalty(scores: Tensor, sequences: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty on tokens already in the row: positive scores divided by ``penalty``,
    negative ones multiplied. ``sequences (N, T)`` with ``seen (N, T)`` True where a token counts
    (not left padding)."""
    vocab = scores.shape[-1]
    # Ignored positions point at an extra column that is cut off afterwards.
    ids = sequences.masked_fill(~seen, vocab)
    padded = torch.nn.functional.pad(scores, (0, 1))
    picked = padded.gather(1, ids)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return padded.scatter(1, ids, picked)[:, :vocab]


def top_k_filter(scores: Tensor, k: int, keep_at_least: int = 1) -> Tensor:
    """Keep the ``k`` highest scores of each row (ties with the k-th kept too)."""
    k = min(max(k, keep_at_least), scores.shape[-1])
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: Tensor, p: float, keep_at_least: int = 1) -> Tensor:
    """Nucleus: keep the smallest set of top tokens whose probability reaches ``p``."""
    ascending, order = torch.sort(scores, descending=False)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - p)  # the low tail holding at most 1 - p of the mass
    remove[:, -keep_at_least:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


def min_p_filter(scores: Tensor, min_p: float, keep_at_least: int = 1) -> Tensor:
    """Keep tokens whose probability is at least ``min_p`` times the top token's."""
    probs = scores.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    top = torch.topk(probs, min(keep_at_least, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, top, False)
    return scores.masked_fill(remove, NEG_INF)


def adjust_scores(
    scores: Tensor, sequences: Tensor, seen: Tensor, s: GenerationConfig, keep_at_least: int = 1
) -> Tensor:
    """Apply the config's penalty and (when sampling) warpers to ``scores (N, V)``."""
    if s.repetition_penalty is not None:
        scores = repetition_penalty(scores, sequences, seen, s.repetition_penalty)
    if not s.do_sample:
        return scores
    if s.temperature != 1.0:
        scores = scores / s.temperature
    if s.top_k is not None:
        scores = top_k_filter(scores, s.top_k, keep_at_least)
    if s.top_p is not None:
        scores = top_p_filter(scores, s.top_p, keep_at_least)
    if s.min_p is not None:
        scores = min_p_filter(scores, s.min_p, keep_at_least)
    return scores


def choose_tokens(scores: Tensor, s: GenerationConfig) -> Tensor:
    """Next token ``(N,)``: the argmax, or one draw from ``softmax(scores)`` (``s.generator``
    or the global seed)."""
    if not s.do_sample:
        return scores.argmax(dim=-1)
    return draw(scores.softmax(dim=-1), 1, s.generator).squeeze(1)


def draw(probs: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``count`` draws without replacement per row of ``probs (N, V)`` -> ``(N, count)``.

    A generator lives on one device: a CPU generator given for a GPU run draws on the CPU
    (the same numbers as a CPU run), and the tokens go back to the probabilities' device."""
    if generator is None or generator.device == probs.device:
        return torch.multinomial(probs, count, generator=generator)
    drawn = torch.multinomial(probs.to(generator.device), count, generator=generator)
    return drawn.to(probs.device)
