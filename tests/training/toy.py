"""A small real Task for the loop's tests: a tiny GPT-2-style DecoderModel learning sequences.

Each example is an arithmetic progression modulo ``VOCAB`` (start and stride drawn once from a
seed), so the model can learn it and evaluation loss falls. ``batch`` replaces some tokens with
random ones drawn from the generator it is given (like MLM masking: the batch depends on the
generator, so a resume that got the generator wrong would show), and the model has dropout, so
one that got the torch RNG wrong would show too.
"""

from __future__ import annotations

import math
import os
import signal

import torch
import torch.nn.functional as F
from torch import nn

from atenea.models import DecoderConfig, DecoderModel
from atenea.training.tasks import Task

VOCAB, LENGTH = 23, 12


def progressions(count: int, seed: int) -> torch.Tensor:
    """``(count, LENGTH)`` token ids: ``(start + stride * t) mod VOCAB``."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (count, 1), generator=generator)
    stride = torch.randint(1, 5, (count, 1), generator=generator)
    return (start + stride * torch.arange(LENGTH)) % VOCAB


class ToyTask(Task):
    """The Task interface of docs/training.md, on ``num_examples`` fixed sequences. It keeps
    ``Task``'s hooks (its own order, carried state: none) and builds its examples itself, so
    it skips ``Task.__init__`` (which encodes texts with a tokenizer)."""

    name = "toy"
    main_metric = "perplexity"
    higher_is_better = False
    tokenizer = None

    def __init__(self, num_examples=48, dropout=0.1, noise=0.1, nan_at_call=None, seed=0):
        self.train_ids = progressions(num_examples, seed)
        self.validation_ids = progressions(16, seed + 1)
        self.dropout, self.noise, self.seed = dropout, noise, seed
        self.nan_at_call = nan_at_call  # loss() returns NaN from this call on (1-based)
        self.loss_calls = 0
        self.seen: list[list[int]] = []  # the indices of every batch() call, in order

    def describe(self) -> dict:
        return {"task": self.name, "num_examples": len(self.train_ids), "seed": self.seed}

    def build_model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        config = DecoderConfig.from_name(
            "gpt2-tiny", vocab_size=VOCAB, dim=32, num_layers=1, num_heads=2, ffn_hidden=48,
            max_positions=16, dropout=self.dropout, attention_dropout=self.dropout,
            bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        return DecoderModel(config)

    def num_train_examples(self) -> int:
        return len(self.train_ids)

    def batch(self, indices: list[int], generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.seen.append(list(indices))
        ids = self.train_ids[indices]
        # Per-example noise from (the generator, the example's index): an example gets the same
        # noise whichever rank's shard it lands in, so DDP matches one process.
        base = int(torch.randint(0, 2**40, (1,), generator=generator))
        noisy = ids.clone()
        for row, index in enumerate(indices):
            own = torch.Generator().manual_seed(base * 1_000_003 + index)
            replace = torch.rand(LENGTH, generator=own) < self.noise
            noise = torch.randint(0, VOCAB, (LENGTH,), generator=own)
            noisy[row] = torch.where(replace, noise, ids[row])
        return {"input_ids": noisy, "labels": ids}

    def loss(self, model, batch) -> torch.Tensor:
        self.loss_calls += 1
        loss = model(batch["input_ids"], labels=batch["labels"]).loss
        if self.nan_at_call is not None and self.loss_calls >= self.nan_at_call:
            return loss * float("nan")
        return loss

    def tokens(self, batch) -> int:
        return batch["input_ids"].numel()

    @torch.no_grad()
    def evaluate(self, model, limit=None) -> dict[str, float]:
        ids = self.validation_ids[:limit].to(next(model.parameters()).device)
        logits = model(ids).logits.float()
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        return {"loss": float(loss), "perplexity": math.exp(float(loss))}


class SignalledTask(ToyTask):
    """The toy task, sending this process ``number`` during loss call ``at_call`` (mid-step: the
    step goes on; None: never)."""

    def __init__(self, at_call, number=signal.SIGINT, **kwargs):
        super().__init__(**kwargs)
        self.at_call, self.number = at_call, number

    def loss(self, model, batch):
        if self.loss_calls + 1 == self.at_call:
            os.kill(os.getpid(), self.number)
        return super().loss(model, batch)
