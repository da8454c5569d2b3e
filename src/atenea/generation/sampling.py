"""Greedy decoding and sampling: one token per row per step, until every row is done.

A row is done when it produces an end token or a stop string; from then on it is filled with
``pad_token_id`` while the others continue. The loop ends when all rows are done or after
``max_new_tokens``; the output is only as long as the longest row needed.

Asking "is every row done?" reads a flag back from the device. On a GPU that wait would stall
the queue of kernels every token, so there the loop asks every ``CHECK_EVERY`` tokens and trims
the extra steps afterwards (the rows were done: they only hold padding). The tokens are the
same either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.generation.config import GenerationConfig
from atenea.generation.logits import adjust_scores, choose_tokens
from atenea.generation.stopping import StopCondition


def sample(decoding, prompt: Tensor, prompt_mask: Tensor, s: GenerationConfig) -> Tensor:
    """``prompt (B, L0)`` -> sequences ``(B, L0 + new)``; ``decoding`` runs the model."""
    batch, length = prompt.shape
    total = length + s.max_new_tokens
    sequences = torch.empty(batch, total, dtype=torch.long, device=prompt.device)
    sequences[:, :length] = prompt
    seen = torch.ones_like(sequences, dtype=torch.bool)  # repetition penalty: not the padding
    seen[:, :length] = prompt_mask
    running = torch.ones(batch, dtype=torch.bool, device=prompt.device)
    # A streamer shows each token as it comes: it must know at once that the rows are done.
    every = 1 if s.streamer is not None else check_every(prompt.device)
    # Checked less often than every token: the end of the output is after the last token chosen
    # while some row still ran, kept on the device (checked every token, it is the loop's end).
    last_running = torch.tensor(length, device=prompt.device) if every > 1 else None
    stop = StopCondition(s, prompt.device)
    if s.streamer is not None:
        s.streamer.put(prompt.cpu())
    end = length
    if s.max_new_tokens:
        logits = decoding.first()
    for new in range(s.max_new_tokens):
        scores = adjust_scores(logits.float(), sequences[:, :end], seen[:, :end], s)
        tokens = choose_tokens(scores, s)
        if s.pad_token_id is not None:
            tokens = torch.where(running, tokens, s.pad_token_id)
        sequences[:, end] = tokens
        end += 1
        if s.streamer is not None:
            s.streamer.put(tokens.cpu())
        if last_running is not None:
            last_running = torch.where(running.any(), end, last_running)
        running &= ~stop(sequences[:, :end])
        if new + 1 == s.max_new_tokens or ((new + 1) % every == 0 and not bool(running.any())):
            break
        logits = decoding.step(tokens)
    if s.streamer is not None:
        s.streamer.end()
    # Steps after every row was done (between two checks) held padding only: drop them.
    return sequences[:, : end if last_running is None else int(last_running)]


# Tokens between two "is every row done?" checks, per device type (see the module docstring).
CHECK_EVERY = {"cuda": 8}


def check_every(device: torch.device) -> int:
    return CHECK_EVERY.get(torch.device(device).type, 1)
