"""When a row is done: it produced an end-of-sequence token, or its text now contains a stop
string, or it reached the length limit (the loops check that one themselves)."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from atenea.generation.config import GenerationConfig


class StopCondition:
    """``condition(sequences (N, T)) -> (N,)`` bool: True where the last token ends the row.

    A stop string counts when the *last* token completes (or runs past) an occurrence of it, as
    in Hugging Face: a stop string already in the prompt does not stop anything. Only the last
    few tokens are decoded (enough to hold the longest stop string), so a step costs the same
    whatever the length.
    """

    def __init__(self, s: GenerationConfig, device: torch.device):
        self.eos = torch.tensor(s.eos_token_id, dtype=torch.long, device=device)
        self.stop_strings, self.tokenizer = s.stop_strings, s.tokenizer
        # Every token stands for at least one byte of text, bar special ones (a byte-level
        # tokenizer may spend 4 tokens on one emoji): a window of the longest stop string's
        # UTF-8 bytes + 2 tokens holds any occurrence the last token completes.
        self.window = max((len(text.encode("utf-8")) for text in s.stop_strings), default=0) + 2

    def __call__(self, sequences: Tensor) -> Tensor:
        done = torch.isin(sequences[:, -1], self.eos)
        if self.stop_strings:
            done = done | self._completes_stop_string(sequences)
        return done

    def _completes_stop_string(self, sequences: Tensor) -> Tensor:
        tails = sequences[:, -self.window :].tolist()
        hits = []
        for tail in tails:
            before, after = self.tokenizer.decode(tail[:-1]), self.tokenizer.decode(tail)
            hits.append(any(_ends_in_new_text(before, after, s) for s in self.stop_strings))
        return torch.tensor(hits, dtype=torch.bool, device=sequences.device)


def _ends_in_new_text(before: str, after: str, text: str) -> bool:
    """Whether an occurrence of ``text`` in ``after`` ends past the part it shares with
    ``before`` (what the last token added, or changed: a byte completing a character). Such an
    occurrence starts no earlier than ``len(text) - 1`` characters before that point; it may
    overlap one wholly in ``before`` ("w7 w7" + " w7" ends a new "w7 w7")."""
    shared = len(os.path.commonprefix([before, after]))
    return after.find(text, max(0, shared - len(text) + 1)) != -1
