"""The optimizer and the learning-rate schedule of every training run.

    make_optimizer(model, lr, weight_decay)        AdamW, weight decay on matrices only
    make_scheduler(optimizer, warmup, total)       linear warmup, then cosine down to min_ratio

The schedule is a ``LambdaLR`` whose factor is a pure function of the step, so its saved state
(``last_epoch``, the base learning rates) is plain JSON and a resumed run gets the very same
learning rates.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``, in two groups:

    - group 0, decayed: weights with two or more dimensions that are not embeddings (the
      matrices of linear layers);
    - group 1, not decayed: biases, norm scales (1-d) and embedding tables.

    Why: weight decay pulls a parameter towards 0. For a linear map that is a useful prior (small
    weights, smoother function), but a norm's scale of 0 or a bias of 0 is not a simpler model,
    and an embedding row is only updated when its token appears, so decay would shrink rare
    tokens' vectors every step regardless of the data (GPT-2/nanoGPT and BERT make the same
    split). A tied output head shares the embedding's tensor and is not decayed either.

    ``fused``: AdamW's single-kernel update (for parameters on a GPU).
    """
    if lr <= 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected >= 0, got {weight_decay}")
    embeddings = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    decay, no_decay = [], []
    for p in model.parameters():  # de-duplicated: a tied tensor appears once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError(f"model: {type(model).__name__} has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """The multiplier of the base learning rate used by optimizer step ``step`` (0-based).

    Warmup (``step < warmup_steps``): ``(step + 1) / (warmup_steps + 1)``, a line from near 0 up
    to 1, so even the first step learns something (a factor of exactly 0 would waste it).
    Then cosine from 1 at ``step == warmup_steps`` to ``min_ratio`` at ``step == total_steps``
    (and ``min_ratio`` after that).
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.1
) -> LambdaLR:
    """``LambdaLR`` following ``lr_factor``: call ``scheduler.step()`` after every optimizer
    step. Linear warmup from ~0 to ``lr`` over ``warmup_steps``, then cosine decay to
    ``min_ratio * lr`` at ``total_steps``."""
    if total_steps < 1:
        raise ValueError(f"total_steps: expected >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected >= 0, got {warmup_steps}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio: expected a value in [0, 1], got {min_ratio}")

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps, total_steps, min_ratio)

    return LambdaLR(optimizer, factor)


def refresh_learning_rates(scheduler: LambdaLR) -> list[float]:
    """Set the optimizer's learning rates to the schedule's value at the scheduler's current step.

    Loading a saved state restores the learning rates the *saved* schedule had reached; when a
    resumed run has more steps (``--resume --steps 2000`` on a 1200-step run), the scheduler is
    rebuilt for the new length and this puts its value in place: the schedule continues as if
    the run had been set to the new length from the start (the cosine picks up at its point for
    the new total, so the rate rises back from its floor). Returns the rates."""
    rates = [
        base * factor(scheduler.last_epoch)
        for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)
    ]
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = list(rates)  # what get_last_lr() reports (private in torch)
    return rates
