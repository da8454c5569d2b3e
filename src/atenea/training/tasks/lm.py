"""lm: next token. Byte-level BPE + ``DecoderModel`` on packed documents.

Documents are packed into rows of ``max_length`` tokens; the model's document mask
(``masks.document(ids) & masks.causal()``) keeps every token inside its own document.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from atenea.models import DecoderConfig, DecoderModel
from atenea.training import metrics
from atenea.training.tasks.base import (
    EVAL_BATCH,
    IGNORE,
    Evaluating,
    Task,
    device_of,
    next_tokens,
    require_token,
    token_mean,
)

# The suggested prompt of a trained model: the first tokens of a validation row.
PROMPT_TOKENS = 8


class LanguageModelTask(Task):
    """Documents, each followed by ``</s>``, concatenated and cut into rows of ``max_length``
    tokens. Batch: ``input_ids``, ``document_ids`` (-1 on the padding of the last row) and
    ``labels`` ``(B, L)``: the input ids, -100 where a token starts a new document (it must not
    be predicted from the previous one) and on padding. Option ``join_documents``: every row
    is one document (a token attends to the documents before it in its row, as GPT-2 trains),
    which is what an LM needs to use passages put before a text (in-context retrieval)."""

    name, main_metric, higher_is_better = "lm", "perplexity", False

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(
            vocab_size=tok.vocab_size, positions="learned",
            pad_token_id=require_token(tok, "pad"), bos_token_id=require_token(tok, "bos"),
            eos_token_id=require_token(tok, "eos"),
        )  # fmt: skip
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        self.train_rows = self.pack(train)
        self.val_rows = self.pack(validation)

    def example_inputs(self, count):
        rows = self.val_rows[0][:count, :PROMPT_TOKENS]
        return [self.tokenizer.decode(row.tolist()) for row in rows]

    def stream(self, documents: list[dict]) -> tuple[list[int], list[int]]:
        """The documents as one stream of token ids, each ended by ``</s>``, and the index of
        the document every token belongs to."""
        eos = self.model_config["eos_token_id"]
        encoded = self.tokenizer.encode_batch(
            [d["text"] for d in documents], truncation=False, add_special_tokens=False
        )
        stream, owners = [], []
        for index, ids in enumerate(encoded):
            stream += ids + [eos]
            owners += [index] * (len(ids) + 1)
        return stream, owners

    def pack(self, documents: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        """``(input_ids, document_ids, labels)``, each ``(rows, max_length)``."""
        pad = self.model_config["pad_token_id"]
        stream, owners = self.stream(documents)
        length = self.max_length
        rows = max(1, math.ceil(len(stream) / length))
        fill = rows * length - len(stream)
        input_ids = torch.tensor(stream + [pad] * fill).view(rows, length)
        document_ids = torch.tensor(owners + [-1] * fill).view(rows, length)
        if self.options.get("join_documents"):  # one document a row: the text before counts
            document_ids = torch.where(document_ids >= 0, 0, -1)
        return input_ids, document_ids, self.labels_of(input_ids, document_ids)

    @staticmethod
    def labels_of(input_ids: Tensor, document_ids: Tensor) -> Tensor:
        """``labels (B, L)``: DecoderModel compares position t's logits with ``labels[t + 1]``,
        so a token whose predecessor is in another document (a document's first token in
        this row) gets -100, and so does padding (document -1)."""
        labels = input_ids.clone()
        starts = torch.zeros_like(document_ids, dtype=torch.bool)
        starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
        labels[starts | (document_ids < 0)] = IGNORE
        return labels

    def build_model(self) -> nn.Module:
        return DecoderModel(DecoderConfig(**self.model_config))

    def num_train_examples(self) -> int:
        return self.train_rows[0].shape[0]

    def num_validation_examples(self) -> int:  # also the segmented task's streams
        return self.val_rows[0].shape[0]

    @staticmethod
    def _batch(rows, indices):
        chosen = torch.as_tensor(list(indices), dtype=torch.long)
        input_ids, document_ids, labels = (t.index_select(0, chosen) for t in rows)
        return {"input_ids": input_ids, "document_ids": document_ids, "labels": labels}

    def batch(self, indices, generator):
        return self._batch(self.train_rows, indices)

    def loss(self, model, batch):
        """The mean over the predicted tokens of the whole micro-batch (under DDP, of every
        rank's shard: ``mean_over_ranks``; rows hold different numbers of them)."""
        logits = model(batch["input_ids"], document_ids=batch["document_ids"]).logits
        return token_mean(logits, next_tokens(batch["labels"]))

    def tokens(self, batch):
        return int((batch["document_ids"] >= 0).sum())

    def evaluate(self, model, limit=None):
        total = self.val_rows[0].shape[0]
        count = total if limit is None else min(limit, total)
        nll, predicted = 0.0, 0
        with Evaluating(model):
            device = device_of(model)
            for start in range(0, count, EVAL_BATCH):
                b = self._batch(self.val_rows, range(start, min(start + EVAL_BATCH, count)))
                # The model's loss shifts the labels itself (position t predicts labels[t + 1]):
                # its mean over the predicted tokens, times their number, is the batch's sum.
                targets = int((b["labels"][:, 1:] != IGNORE).sum())
                if targets:
                    b = {key: value.to(device) for key, value in b.items()}
                    loss = model(b["input_ids"], document_ids=b["document_ids"],
                                 labels=b["labels"]).loss  # fmt: skip
                    nll += float(loss) * targets
                    predicted += targets
        return {"perplexity": metrics.perplexity(nll, predicted),
                "loss": nll / max(predicted, 1)}  # fmt: skip
