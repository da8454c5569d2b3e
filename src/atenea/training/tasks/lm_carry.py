"""lm with the memory carried from step to step: ``atenea train lm --segment L --memory M
--set carry_memory=true`` (Transformer-XL's own training, Dai et al. 2019, section 3.2).

The training stream is cut into ``G`` streams (``G`` = batch size x accumulation: one stream
per row of a step), each a run of consecutive segments of ``L`` tokens:

    stream s = segments [s*K, (s+1)*K)      K = (segments of the text) // G
    step k of an epoch takes segment k of every stream (one segment a row)

Each micro-batch (and under DDP each rank's shard of it) always holds the same streams, so it
keeps one ``SegmentMemory`` from step to step: the keys/values of segment ``k`` (computed with
the weights of step ``k``, detached) are the memory of segment ``k + 1``. A model then trains
with ``M`` tokens of context at the cost of one segment a step (``lm_memory.py``'s windows
cost ``ceil(M/L) + 1`` segments). Documents reset the memory where they start (the memory's
document ids), across steps as inside one; a new epoch starts every stream from empty.

The order is fixed (``train_order``: the loop asks for it instead of shuffling) and the
memories are part of a checkpoint (``train_state`` / ``load_train_state``): a run stopped and
resumed computes the same losses as an uninterrupted one, under DDP too (each rank its own
streams and memories). Resuming on another number of ranks starts the memories empty.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.models.config import DecoderConfig
from atenea.nn.memory import SegmentMemory
from atenea.training.distributed import unwrap
from atenea.training.names import group_by_index, indexed_name
from atenea.training.tasks.base import next_tokens, token_mean
from atenea.training.tasks.lm_memory import SegmentedLanguageModelTask, on_host, with_host_copies
from atenea.training.tasks.settings import TaskError

MEMORY = "memory"  # the carried memories' tensors: ``memory.{slot}.{name}`` (``names.py``)


class CarriedMemoryLanguageModelTask(SegmentedLanguageModelTask):
    """The segmented lm task with option ``carry_memory``: an example is one segment, a step
    takes the next segment of each of its streams, the memory goes on from the last step."""

    @property
    def window(self) -> int:
        return 1  # the memory comes from the previous steps, not from a window

    def prepare(self, train, validation):
        super().prepare(train, validation)
        # The streams the loop reads (rows a step): the loop says it in ``train_order``, the
        # one place it is told; ``batch`` needs it to tell the stream of a segment.
        self.streams: int | None = None
        # The memory of each micro-batch's streams, under the first stream's index: (memory,
        # the last segment it has seen).
        self.carried: dict[int, tuple[SegmentMemory, int]] = {}

    def segments_per_stream(self, streams: int) -> int:
        """``K``, the segments of each of ``streams`` streams: the training segments //
        ``streams`` (the ragged end unread). TaskError under 2: the memory would never carry."""
        per = self.num_train_examples() // streams
        if per < 2:
            raise TaskError(
                f"carry_memory: {self.num_train_examples()} segments of {self.segment} tokens "
                f"make fewer than 2 per stream for {streams} streams (batch size x accumulation)"
                f"; give more text, a shorter segment or a smaller batch"
            )
        return per

    def train_order(self, epoch: int, streams: int) -> list[int]:
        """The segments in the order the steps take them, for ``streams`` rows a step: segment
        ``k`` of streams ``0 .. streams-1``, then segment ``k + 1`` of each (every epoch alike).
        Keeps ``streams`` for ``batch``."""
        per = self.segments_per_stream(streams)
        self.streams = streams
        return [stream * per + step for step in range(per) for stream in range(streams)]

    def batch(self, indices, generator):
        if self.streams is None:
            raise TaskError("carry_memory: batches follow train_order (the loop asks for it)")
        per = self.segments_per_stream(self.streams)
        batch = self._batch(self.train_rows, indices)
        # The micro-batch's (or rank's shard's) first stream names its memory: Python ints,
        # so the loss reads no tensor back from the device to find it.
        first = int(indices[0])
        batch["stream"], batch["segment_index"] = divmod(first, per)
        return with_host_copies(batch)  # the memory reads the document ids on the host

    def loss(self, model, batch):
        first, index = batch["stream"], batch["segment_index"]
        memory, last = self.carried.get(first, (None, -1))
        if memory is None or index == 0:  # a new epoch (or a resume on other ranks): empty
            memory = unwrap(model).new_memory(len(batch["input_ids"]))
        elif index != last + 1:
            raise TaskError(
                f"carry_memory: stream {first} is at segment {last}, but the step brings "
                f"segment {index}"
            )
        documents = on_host(batch, "document_ids")  # no read from the device (lm_memory.py)
        logits = model(batch["input_ids"], memory=memory, document_ids=documents).logits
        self.carried[first] = (memory, index)
        return token_mean(logits, next_tokens(batch["labels"]))

    # -- checkpoints ------------------------------------------------------------------------------

    def train_state(self) -> dict[str, Tensor]:
        """This process's carried memories as named tensors (``memory.{n}.…``, n in stream
        order), with the first stream and the last segment each has seen."""
        tensors = {}
        for slot, (first, (memory, last)) in enumerate(sorted(self.carried.items())):
            own = {"stream": torch.tensor([first]), "segment_index": torch.tensor([last]),
                   **memory.state()}  # fmt: skip
            tensors.update({indexed_name(MEMORY, slot, name): t for name, t in own.items()})
        return tensors

    def load_train_state(self, tensors: dict[str, Tensor], device) -> None:
        """Take back the memories of ``train_state`` (a resumed run goes on with them)."""
        slots = group_by_index(MEMORY, tensors)
        c = DecoderConfig(**self.model_config)  # the memory's settings, as the model has them
        self.carried = {}
        for saved in slots.values():
            rows = saved["next_position"].shape[0]
            memory = SegmentMemory(
                c.num_layers, rows, c.memory_len, c.compressed_len, c.compression_rate,
                device=device,
            )  # fmt: skip
            memory.load_state(
                {k: v for k, v in saved.items() if k not in ("stream", "segment_index")}
            )
            self.carried[int(saved["stream"])] = (memory, int(saved["segment_index"]))
