"""Beam search, scored as Hugging Face scores it.

Each row keeps ``K = num_beams`` running beams. Every step, each beam's log-probabilities are
added to its running sum, and the best ``2K`` continuations over all beams are taken (twice as
many as needed, so that K survive even if K of them end). A continuation that ends (end token,
stop string, or the length limit) and ranks among the first K becomes a *finished hypothesis*
with score

    sum of log-probabilities / (new tokens ** length_penalty)

(the end token counted); the row keeps its K best hypotheses. The K best continuations that did
not end run on. A row is done when it holds K hypotheses (``early_stopping=True``), or when no
running beam can still beat its worst hypothesis (``False``: judged at the current length;
``"never"``: at the longest possible length when ``length_penalty > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.generation.config import GenerationConfig
from atenea.generation.logits import adjust_scores, draw
from atenea.generation.stopping import StopCondition

EXCLUDED = -1.0e9  # the score of a beam that must not be picked (Hugging Face's constant)


@dataclass
class BeamSearchOutput:
    """``generate(..., num_beams=K, return_beams=True)``.

    - ``sequences (B, L0 + new)``: the best beam of each row (what ``generate`` returns);
    - ``beams (B, K, L0 + new')``: every finished beam, best first, padded with pad_token_id;
    - ``scores (B, K)``: their scores, ``sum log p / new_tokens ** length_penalty``;
    - ``lengths (B, K)``: the new tokens of each beam.
    """

    sequences: Tensor
    beams: Tensor
    scores: Tensor
    lengths: Tensor


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values (B, N, ...)`` -> ``(B, M, ...)`` picking ``index (B, M)`` along dim 1."""
    while index.dim() < values.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(values, index, dim=1)


class Hypotheses:
    """The finished beams of every row: ``sequences (B, K, T)``, ``scores (B, K)`` (best first),
    ``lengths (B, K)`` new tokens, ``full (B, K)`` which slots hold a real hypothesis."""

    def __init__(self, running: Tensor, length_penalty: float):
        batch, beams, _ = running.shape
        self.length_penalty = length_penalty
        self.sequences = running.clone()
        self.scores = torch.full((batch, beams), EXCLUDED, device=running.device)
        self.lengths = torch.zeros(batch, beams, dtype=torch.long, device=running.device)
        self.full = torch.zeros(batch, beams, dtype=torch.bool, device=running.device)

    def add(self, candidates, candidate_scores, ended, new_tokens, may_add):
        """Merge the candidates that ``ended`` (and ``may_add``) and keep the K best."""
        beams = self.scores.shape[1]
        scores = candidate_scores / (new_tokens**self.length_penalty)
        # Added, not assigned: an excluded candidate then ranks below an empty slot.
        accepted = ended & may_add
        scores = scores + (~accepted).float() * EXCLUDED
        merged_scores = torch.cat([self.scores, scores], dim=1)
        best = torch.topk(merged_scores, k=beams).indices
        self.scores = _take(merged_scores, best)
        self.sequences = _take(torch.cat([self.sequences, candidates], dim=1), best)
        lengths = torch.full_like(scores, new_tokens, dtype=torch.long)
        self.lengths = _take(torch.cat([self.lengths, lengths], dim=1), best)
        self.full = _take(torch.cat([self.full, accepted], dim=1), best)


def beam_search(decoding, prompt: Tensor, prompt_mask: Tensor, s: GenerationConfig):
    """``prompt (B, L0)`` -> the best sequences ``(B, L0 + new)``, or a ``BeamSearchOutput``."""
    batch, length = prompt.shape
    k, device = s.num_beams, prompt.device
    total = length + s.max_new_tokens
    kept = max(2, 1 + len(s.eos_token_id)) * k  # continuations looked at per row and step
    among_first_k = torch.arange(kept, device=device) < k
    fill = s.pad_token_id if s.pad_token_id is not None else 0

    running = torch.full((batch, k, total), fill, dtype=torch.long, device=device)
    running[:, :, :length] = prompt[:, None]
    seen = torch.ones(batch * k, total, dtype=torch.bool, device=device)
    seen[:, :length] = prompt_mask.repeat_interleave(k, dim=0)
    # Every beam starts as the same prompt: only the first may propose, or all K would pick
    # the same tokens.
    running_scores = torch.zeros(batch, k, device=device)
    running_scores[:, 1:] = EXCLUDED
    finished = Hypotheses(running, s.length_penalty)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    stop = StopCondition(s, device)

    # The prompt is read once per row, then each row's cache is copied to its K beams.
    logits = decoding.first()
    expand = torch.arange(batch, device=device).repeat_interleave(k)
    offsets = torch.arange(batch, device=device)[:, None] * k  # row b's beams start at b * K
    decoding.select(expand)
    logits = logits[expand]
    for end in range(length, total):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        log_probs = adjust_scores(
            log_probs, running[:, :, :end].flatten(0, 1), seen[:, :end], s, keep_at_least=kept // k
        )
        vocab = log_probs.shape[-1]
        sums = (log_probs.view(batch, k, vocab) + running_scores[:, :, None]).view(batch, -1)
        if s.do_sample:
            picked = draw(sums.softmax(-1), kept, s.generator)
            # best first, as topk gives them: "among the first K" below means the K best draws
            candidate_scores, order = sums.gather(1, picked).sort(
                dim=1, descending=True, stable=True
            )
            picked = picked.gather(1, order)
        else:
            candidate_scores, picked = torch.topk(sums, kept)
        parents, tokens = picked // vocab, picked % vocab
        candidates = _take(running, parents)
        candidates[:, :, end] = tokens
        ended = stop(candidates[:, :, : end + 1].flatten(0, 1)).view(batch, kept)
        ended |= end + 1 == total  # the length limit ends every continuation

        # The K best continuations that did not end run on.
        alive_scores = candidate_scores + ended.float() * EXCLUDED
        survivors = torch.topk(alive_scores, k).indices
        running = _take(candidates, survivors)
        running_scores = _take(alive_scores, survivors)
        beam_parents = _take(parents, survivors)

        full_rows = finished.full.all(dim=1, keepdim=True) & (s.early_stopping is True)
        may_add = among_first_k & improvable & ~full_rows
        finished.add(candidates, candidate_scores, ended, end + 1 - length, may_add)

        improvable = improvable & _can_improve(running_scores, finished, end + 1 - length, s)
        done = finished.full.all() & (s.early_stopping is True)
        if not bool(improvable.any()) or bool(done) or bool(ended.all()):
            break
        decoding.select((beam_parents + offsets).flatten())
        logits = decoding.step(running[:, :, end].flatten())
    return _output(finished, length, s)


def _can_improve(
    running_scores, finished: Hypotheses, new_tokens: int, s: GenerationConfig
) -> Tensor:
    """``(B, 1)``: could the best running beam still beat the row's worst hypothesis?"""
    if s.early_stopping == "never" and s.length_penalty > 0:
        new_tokens = s.max_new_tokens  # the best it could do: grow to the limit
    best_running = running_scores[:, :1] / (new_tokens**s.length_penalty)
    worst = finished.scores.min(dim=1, keepdim=True).values
    worst = torch.where(finished.full, worst, EXCLUDED)
    return (best_running > worst).any(dim=-1, keepdim=True)


def _output(finished: Hypotheses, length: int, s: GenerationConfig):
    lengths = finished.lengths
    best = finished.sequences[:, 0, : length + int(lengths[:, 0].max())]
    if not s.return_beams:
        return best
    beams = finished.sequences[:, :, : length + int(lengths.max())]
    return BeamSearchOutput(sequences=best, beams=beams, scores=finished.scores, lengths=lengths)
