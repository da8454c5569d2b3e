"""lm with segment memory (Transformer-XL): ``atenea train lm --memory M --segment L``.

The documents (each followed by ``</s>``) are one stream of tokens, cut into segments of ``L``.
The model runs segment after segment with a ``SegmentMemory`` of ``M`` positions per layer
(``DecoderConfig.memory_len``), so a token sees up to ``M`` tokens of its document beyond its
segment; rotary positions keep counting across segments and restart with each document, whose
first token the memory does not see past (``nn/memory.py``).

Training. An example is a window of ``window`` consecutive segments (default: enough for the
memory to fill, ``ceil(M / L) + 1``) run in order from an empty memory; the loss is the mean
over every segment's predicted tokens. Examples are independent (the memory does not carry
from one batch to the next), so the training loop's shuffling, resuming and DDP stay exact.

Evaluation. The validation stream is cut into up to ``EVAL_STREAMS`` contiguous streams (of
``SEGMENTS_PER_STREAM`` segments at least, when the text allows) run from
start to end with the memory carried all the way, and reports the perplexity with the memory
and without it (memory 0), on the same segments of ``L``: the memory's own gain. A segment's
first token has no logits before it inside the segment, so each segment predicts ``L - 1``
tokens, with or without memory alike.

The task and the memory read nothing back from the device a segment: a batch keeps host copies
of its document ids (the memory's bookkeeping is on the host, ``nn/memory.py``) and labels
(the counts of predicted tokens), ``with_host_copies``. (The model's forward still reads once:
``check_ids``, the token range.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from atenea.attention.transfer import to_device
from atenea.nn.memory import SegmentMemory
from atenea.training import metrics
from atenea.training.distributed import mean_over_ranks, unwrap
from atenea.training.tasks.base import IGNORE, Evaluating, device_of
from atenea.training.tasks.lm import LanguageModelTask
from atenea.training.tasks.settings import TaskError

EVAL_STREAMS = 8
SEGMENTS_PER_STREAM = 8
# A batch's entry of host copies (``with_host_copies``): a dict, not a tensor, so the training
# loop, which moves a batch's tensor values to the device, leaves it on the host.
HOST_KEY = "host"
HOST_COPIES = ("document_ids", "labels")


def with_host_copies(batch: dict) -> dict:
    """``batch`` (its tensors on the host) with ``batch[HOST_KEY]``: its ``document_ids`` and
    ``labels`` (B, W) kept on the host once the loop has moved the rest (no copy: the same
    tensors)."""
    return {**batch, HOST_KEY: {name: batch[name] for name in HOST_COPIES}}


def on_host(batch: dict, name: str) -> Tensor:
    """``batch[name]`` on the host without a read from the device: the tensor itself while it is
    on the host (so a batch changed after ``batch`` made it is read as changed), else the copy
    ``with_host_copies`` kept. A batch without copies, or whose tensor no longer has the copy's
    shape (replaced after ``batch``), gives its tensor as it is (the memory then reads it back).
    Who replaces a tensor of a moved batch by one of the same shape drops ``batch[HOST_KEY]``."""
    value = batch[name]
    kept = batch.get(HOST_KEY, {}).get(name)
    if value.device.type == "cpu" or kept is None or kept.shape != value.shape:
        return value
    return kept


class SegmentedLanguageModelTask(LanguageModelTask):
    """The lm task with option ``segment > 0``: rotary positions (``positions=alibi``: ALiBi),
    a segment memory of ``memory_len`` (0: the baseline at the same segment length)."""

    def complete_config(self, fields):
        asked = fields.get("positions")
        fields = super().complete_config(fields)
        # Relative distance across segments (learned cannot): rotary, or ALiBi when asked.
        fields["positions"] = "alibi" if asked == "alibi" else "rotary"
        return fields

    @property
    def segment(self) -> int:
        return int(self.options["segment"])

    @property
    def window(self) -> int:
        if self.options.get("window"):
            return int(self.options["window"])
        return math.ceil(self.model_config.get("memory_len", 0) / self.segment) + 1

    def prepare(self, train, validation):
        if self.segment < 2:
            raise TaskError(f"segment: expected at least 2 tokens, got {self.segment}")
        self.train_rows = self.stream_rows(train, self.segment * self.window)
        stream = self.stream_rows(validation, 0)
        total = stream[0].shape[1]
        # Up to EVAL_STREAMS streams, each of at least SEGMENTS_PER_STREAM segments when
        # the text allows: a stream of one segment would never use the memory.
        streams = max(1, min(EVAL_STREAMS, total // (self.segment * SEGMENTS_PER_STREAM)))
        usable = total // streams
        self.val_rows = tuple(t[0, : streams * usable].view(streams, usable) for t in stream)

    def stream_rows(self, documents: list[dict], length: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(input_ids, document_ids, labels)``: the stream cut into rows of ``length``
        tokens (the ragged end dropped: a segment has no padding), or one row (0)."""
        stream, owners = self.stream(documents)
        length = length or len(stream)
        rows = len(stream) // length
        if rows == 0:
            raise TaskError(
                f"segment: the texts hold {len(stream)} tokens, fewer than one example of "
                f"{length} (segment x window); give more text or a shorter segment"
            )
        input_ids = torch.tensor(stream[: rows * length]).view(rows, length)
        document_ids = torch.tensor(owners[: rows * length]).view(rows, length)
        return input_ids, document_ids, self.labels_of(input_ids, document_ids)

    def batch(self, indices, generator):
        return with_host_copies(super().batch(indices, generator))

    def example_inputs(self, count):
        rows = self.val_rows[0][:count, :8]
        return [self.tokenizer.decode(row.tolist()) for row in rows]

    def run_segments(self, model, batch: dict, memory: SegmentMemory) -> tuple[Tensor, int]:
        """Run ``batch``'s rows ``(B, W)`` segment by segment through ``memory``: (summed
        negative log-likelihood of the predicted tokens, their count)."""
        input_ids, labels = batch["input_ids"], batch["labels"]
        documents = on_host(batch, "document_ids")  # the memory's bookkeeping is on the host
        total = torch.zeros((), device=input_ids.device)
        count = 0
        starts = range(0, input_ids.shape[1], self.segment)
        # Every segment's count of predicted tokens, from the host labels: a python int to
        # weigh the segment's mean loss with, read from no device.
        predicted = on_host(batch, "labels") != IGNORE
        counts = [int(predicted[:, s + 1 : s + self.segment].sum()) for s in starts]
        for start, targets in zip(starts, counts):
            part = slice(start, start + self.segment)
            out = model(
                input_ids[:, part], memory=memory, document_ids=documents[:, part],
                labels=labels[:, part],
            )  # fmt: skip
            if targets:
                total = total + out.loss * targets
                count += targets
        return total, count

    def loss(self, model, batch):
        plain = unwrap(model)  # under DDP the memory is the model's
        total, count = self.run_segments(model, batch, plain.new_memory(len(batch["input_ids"])))
        return mean_over_ranks(total, torch.tensor(count))  # as lm's (base.token_mean)

    def tokens(self, batch):
        return int(batch["input_ids"].numel())

    def evaluate(self, model, limit=None):
        """Perplexity over the validation streams with the memory, and without it."""
        device = device_of(model)
        host = dict(zip(("input_ids", "document_ids", "labels"), self.val_rows, strict=True))
        if limit is not None:  # the first ``limit`` segments of every stream
            host = {k: v[:, : limit * self.segment] for k, v in host.items()}
        batch = {k: to_device(v, device) if k != HOST_KEY else v
                 for k, v in with_host_copies(host).items()}  # fmt: skip
        results = {}
        with Evaluating(model):
            rows = len(batch["input_ids"])
            no_memory = SegmentMemory(model.config.num_layers, rows, 0, device=device)
            for name, memory in (("", model.new_memory(rows)), ("_no_memory", no_memory)):
                nll, count = self.run_segments(model, batch, memory)
                results[f"perplexity{name}"] = metrics.perplexity(float(nll), count)
                results[f"loss{name}"] = float(nll) / max(count, 1)
        return results
