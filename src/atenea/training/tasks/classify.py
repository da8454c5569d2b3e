"""classify: text -> label. WordPiece + ``EncoderForSequenceClassification``.

The model pools the mean of the token states (``overrides={"pooling": "cls"}`` for BERT's
[CLS]): an encoder pretrained by masked LM (``init``) or for sentence embeddings (MiniLM) never
trained its [CLS] state as a summary, and the mean is a good start for both.
"""

from __future__ import annotations

import torch
from torch import nn

from atenea.models import EncoderConfig, EncoderForSequenceClassification
from atenea.training import metrics
from atenea.training.tasks.base import (
    EVAL_BATCH,
    Evaluating,
    Task,
    device_of,
    pad_rows,
    require_token,
)
from atenea.training.tasks.settings import TaskError


class ClassifyTask(Task):
    """``{"text", "label"}`` -> one label per text. Batch: ``input_ids``, ``attention_mask``
    ``(B, L)`` and ``labels (B,)``."""

    name, main_metric, higher_is_better = "classify", "accuracy", True

    def complete_config(self, fields):
        # No pooler unless asked for (--set pooler=true with pooling=cls: BERT's classifier,
        # saved as transformers' BertForSequenceClassification).
        fields.update(vocab_size=self.tokenizer.vocab_size, pooler=fields.get("pooler", False),
                      pad_token_id=require_token(self.tokenizer, "pad"))  # fmt: skip
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        labels = self.info.get("labels") or sorted({e["label"] for e in train})
        if len(labels) < 2:
            raise TaskError(f"classify: needs at least two labels, the data has {labels}")
        self.info["labels"] = labels
        self.model_config["id2label"] = dict(enumerate(labels))  # model.config.id2label, as HF
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.pad_id = self.model_config["pad_token_id"]
        self.train_ids, self.train_labels = self.encode(train)
        self.val_ids, self.val_labels = self.encode(validation)

    def encode(self, examples: list[dict]) -> tuple[list[list[int]], list[int]]:
        """(token ids of each text, label index of each example)."""
        unknown = sorted({e["label"] for e in examples} - set(self.label_ids))
        if unknown:
            raise TaskError(
                f"classify: labels {unknown} are not ones the model knows: {list(self.label_ids)}"
            )
        ids = self.tokenizer.encode_batch([e["text"] for e in examples], max_length=self.max_length)
        return ids, [self.label_ids[e["label"]] for e in examples]

    def example_inputs(self, count):
        return [self.tokenizer.decode(ids) for ids in self.val_ids[:count]]

    def build_model(self) -> nn.Module:
        model = EncoderForSequenceClassification(
            EncoderConfig(**self.model_config), len(self.label_ids), self.options["pooling"]
        )
        if self.init_state is not None:  # a pooler asked for starts new, like the head
            missing, unexpected = model.encoder.load_state_dict(self.init_state, strict=False)
            unfit = [k for k in missing if not k.startswith("pooler.")] + list(unexpected)
            if unfit:
                raise TaskError(f"init: the pretrained encoder does not fit ({unfit[:3]})")
        return model

    def num_train_examples(self) -> int:
        return len(self.train_ids)

    def num_validation_examples(self) -> int:
        return len(self.val_ids)

    def _batch(self, ids, labels, indices):
        input_ids, mask = pad_rows([ids[i] for i in indices], self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask,
                "labels": torch.tensor([labels[i] for i in indices])}  # fmt: skip

    def batch(self, indices, generator):
        return self._batch(self.train_ids, self.train_labels, indices)

    def loss(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss

    def tokens(self, batch):
        return int(batch["attention_mask"].sum())

    def evaluate(self, model, limit=None):
        count = len(self.val_ids) if limit is None else min(limit, len(self.val_ids))
        predictions = []
        with Evaluating(model):
            device = device_of(model)
            for start in range(0, count, EVAL_BATCH):
                rows = range(start, min(start + EVAL_BATCH, count))
                b = self._batch(self.val_ids, self.val_labels, rows)
                logits = model(b["input_ids"].to(device), b["attention_mask"].to(device)).logits
                predictions += logits.argmax(-1).tolist()
        references = self.val_labels[:count]
        return {"accuracy": metrics.accuracy(predictions, references),
                "macro_f1": metrics.macro_f1(predictions, references)}  # fmt: skip
