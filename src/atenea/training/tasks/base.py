"""What every task shares: the ``Task`` interface (docs/training.md) and the small helpers of
batching and evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.models import Tokenizer
from atenea.models.common import IGNORE, next_tokens  # noqa: F401 - the tasks' names for them
from atenea.training.distributed import mean_over_ranks
from atenea.training.tasks.settings import TaskError

EVAL_BATCH = 64


def token_mean(logits: Tensor, targets: Tensor, **cross_entropy) -> Tensor:
    """Cross entropy of ``logits (..., V)`` against ``targets (...)``, averaged over the
    targets that are not ``IGNORE`` in the whole micro-batch: under DDP over every rank's
    shard (``mean_over_ranks``: rows hold different numbers of them). ``cross_entropy``:
    more of its options (``label_smoothing``)."""
    total = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE,
                            reduction="sum", **cross_entropy)  # fmt: skip
    return mean_over_ranks(total, (targets != IGNORE).sum())


def require_token(tokenizer: Tokenizer, role: str) -> int:
    """The id of the tokenizer's ``role`` token (pad, bos, mask, ...); TaskError without one."""
    token_id = tokenizer.token_id(role)
    if token_id is None:
        raise TaskError(f"tokenizer: has no {role} token; this task needs one")
    return token_id


def pad_rows(rows: list[list[int]], value: int) -> tuple[Tensor, Tensor]:
    """Right-pad lists of ids: ``(ids (B, L), mask (B, L))``, mask 1 for real tokens."""
    length = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


class Evaluating:
    """``with Evaluating(model):`` eval mode and no gradients, the previous mode restored."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training
        self.no_grad = torch.no_grad()

    def __enter__(self):
        self.model.eval()
        self.no_grad.__enter__()
        return self.model

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Task:
    """One task on one dataset with one tokenizer (the interface of docs/training.md).

    Args:
        train, validation: the examples (dicts, see docs/training.md).
        tokenizer: atenea's ``Tokenizer`` (trained on the train texts, or a pretrained one).
        max_length: tokens per sequence at most.
        model_config: the fields of the model's config dataclass (vocab sizes and special ids
            filled in by the task).
        options: the task's own settings (``TASK_OPTIONS``).
        info: what ``describe`` adds (size, overrides, data, tokenizer kind, ...).

    A subclass fills in ``complete_config``, ``prepare``, ``build_model``,
    ``num_train_examples``, ``batch``, ``loss``, ``tokens``, ``evaluate`` and
    ``example_inputs``. A task that carries state from step to step (lm with
    ``carry_memory``, ``lm_carry.py``) also overrides the loop's hooks ``train_order``,
    ``train_state`` and ``load_train_state``, whose defaults here carry nothing.
    """

    name = ""
    main_metric = ""
    higher_is_better = True

    def __init__(self, train, validation, tokenizer, *, max_length, model_config, options, info):
        if not validation:
            raise TaskError(f"{self.name}: no validation examples")
        self.tokenizer, self.max_length = tokenizer, max_length
        self.options, self.info = dict(options), dict(info)
        self.model_config = self.complete_config(dict(model_config))
        self.init_state: dict[str, Tensor] | None = None  # pretrained weights for build_model
        self.prepare(train, validation)

    def complete_config(self, fields: dict) -> dict:
        """The model config's fields with what the tokenizer decides (vocabulary, ids)."""
        return fields

    def prepare(self, train: list[dict], validation: list[dict]) -> None:
        """Encode the examples once (the batches index into what this keeps)."""
        raise NotImplementedError

    def example_inputs(self, count: int) -> list[str]:
        """The inputs of the first ``count`` validation examples, as text a user could give the
        trained model (a sentence to classify, a source to translate, the start of a text)."""
        raise NotImplementedError

    def num_validation_examples(self) -> int | None:
        """Validation examples (rows for lm / mlm) the task evaluates on; None if unknown."""
        return None

    def describe(self) -> dict:
        """What ``task.json`` holds: enough for ``from_description`` to rebuild this task."""
        return {
            "task": self.name,
            "main_metric": self.main_metric,
            "higher_is_better": self.higher_is_better,
            "max_length": self.max_length,
            "options": self.options,
            "model_config": self.model_config,
            **self.info,
        }

    # -- the loop's hooks for a task that carries state from step to step ----------------------

    def train_order(self, epoch: int, group: int) -> list[int] | None:
        """The training examples of ``epoch`` in the order the loop's steps take them, ``group``
        (batch size x accumulation) a step; None: the loop's own permutation, drawn from the
        run's seed (``sampling.epoch_order``), which a task without an order of its own wants."""
        return None

    def train_state(self) -> dict[str, Tensor]:
        """What this process's task carries from step to step, as named tensors saved with
        every checkpoint (every rank's); {} (the default): nothing, and nothing is saved."""
        return {}

    def load_train_state(self, tensors: dict[str, Tensor], device: torch.device) -> None:
        """Take back what ``train_state`` gave, onto ``device`` (a resumed run goes on with it).
        Called only when the checkpoint holds this rank's state; the default has none."""
