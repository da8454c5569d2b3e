"""translate: source text -> target text. Byte-level BPE (characters for the built-in dates) +
``EncoderDecoderModel``, scored on greedy translations.

- The model is pre-norm (``norm_position="pre"``): post-norm stacks need a long warmup and a
  small learning rate to train stably, which a run of a few minutes cannot afford. The loss is
  cross entropy with label smoothing 0.1 (as in the paper;
  ``overrides={"label_smoothing": 0}``).
- The built-in dates use characters, not BPE: the target is digit-by-digit copying and
  reformatting, and BPE merges digits into pieces ("19", "87", "-0") that depend on frequency,
  so the model would have to learn many output symbols for the same digits.
- ``arch`` (an option, ``atenea train translate --arch``): ``transformer`` (the above),
  ``rnnsearch`` or ``rnnencdec`` (``models/rnn.py``: Bahdanau et al.'s RNNsearch and its
  baseline without attention). The data, tokenizer, loss, metrics and decoding are the same.
- The source has no special tokens (the encoder needs none), so ``atenea generate --prompt``
  (which encodes the prompt plainly) feeds a trained model exactly what it was trained on.
"""

from __future__ import annotations

from torch import nn

from atenea.generation import generate
from atenea.models import (
    EncoderDecoderConfig,
    EncoderDecoderModel,
    RNNConfig,
    RNNEncDec,
    RNNSearch,
)
from atenea.training import metrics
from atenea.training.distributed import unwrap
from atenea.training.tasks.base import (
    EVAL_BATCH,
    IGNORE,
    Evaluating,
    Task,
    device_of,
    pad_rows,
    require_token,
    token_mean,
)


class TranslateTask(Task):
    """``{"source", "target"}``: source ids (no special tokens) -> ``<s> target </s>``. Batch:
    ``src_ids``, ``src_mask`` ``(B, S)``; ``tgt_ids`` (``<s>`` + target), ``tgt_mask`` and
    ``labels`` (target + ``</s>``, -100 on padding) ``(B, T)``."""

    name, main_metric, higher_is_better = "translate", "exact_match", True

    @property
    def arch(self) -> str:
        return self.options.get("arch", "transformer")  # runs saved before --arch existed

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(
            src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, share_embeddings=True,
            pad_token_id=require_token(tok, "pad"),
            bos_token_id=require_token(tok, "bos"), eos_token_id=require_token(tok, "eos"),
        )  # fmt: skip
        if self.arch != "transformer":
            return fields  # a recurrent model has no positions and no norms
        fields["norm_position"] = "pre"
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length + 1)
        return fields

    def prepare(self, train, validation):
        c = self.model_config
        self.pad_id, self.bos_id = c["pad_token_id"], c["bos_token_id"]
        self.eos_id = c["eos_token_id"]
        self.train_src, self.train_tgt = self._encode(train)
        self.val_src, self.val_tgt = self._encode(validation)
        self.val_sources = [e["source"] for e in validation]
        self.val_targets = [e["target"] for e in validation]

    def _encode(self, examples):
        def ids(texts, keep):
            return [
                row[:keep]
                for row in self.tokenizer.encode_batch(
                    texts, truncation=False, add_special_tokens=False
                )
            ]

        return (ids([e["source"] for e in examples], self.max_length),
                ids([e["target"] for e in examples], self.max_length - 1))  # fmt: skip

    def example_inputs(self, count):
        return self.val_sources[:count]

    def build_model(self) -> nn.Module:
        if self.arch == "transformer":
            return EncoderDecoderModel(EncoderDecoderConfig(**self.model_config))
        model_class = RNNSearch if self.arch == "rnnsearch" else RNNEncDec
        return model_class(RNNConfig(**self.model_config))

    def num_train_examples(self) -> int:
        return len(self.train_src)

    def num_validation_examples(self) -> int:
        return len(self.val_src)

    def _batch(self, sources, targets, indices):
        src_ids, src_mask = pad_rows([sources[i] for i in indices], self.pad_id)
        tgt_ids, tgt_mask = pad_rows([[self.bos_id] + targets[i] for i in indices], self.pad_id)
        labels, _ = pad_rows([targets[i] + [self.eos_id] for i in indices], IGNORE)
        return {"src_ids": src_ids, "src_mask": src_mask, "tgt_ids": tgt_ids,
                "tgt_mask": tgt_mask, "labels": labels}  # fmt: skip

    def batch(self, indices, generator):
        return self._batch(self.train_src, self.train_tgt, indices)

    def loss(self, model, batch):
        """Cross entropy averaged over the target tokens of the whole micro-batch (under DDP:
        of every rank's shard, ``mean_over_ranks``)."""
        logits = model(batch["src_ids"], batch["tgt_ids"], batch["src_mask"],
                       batch["tgt_mask"]).logits  # fmt: skip
        smoothing = float(self.options["label_smoothing"])
        return token_mean(logits.float(), batch["labels"], label_smoothing=smoothing)

    def tokens(self, batch):
        return int(batch["src_mask"].sum() + batch["tgt_mask"].sum())

    def translate(self, model, sources: list[list[int]]) -> list[list[int]]:
        """Greedy translations (ids, without ``<s>``/``</s>``/padding) of source ids."""
        model = unwrap(model)
        with Evaluating(model):
            return greedy_translate(model, sources, self.pad_id, self.eos_id, self.max_length)

    def evaluate(self, model, limit=None):
        count = len(self.val_src) if limit is None else min(limit, len(self.val_src))
        generated = self.translate(model, self.val_src[:count])
        predictions = [self.tokenizer.decode(ids).strip() for ids in generated]
        references = [t.strip() for t in self.val_targets[:count]]
        return translation_metrics(predictions, references)


def greedy_translate(
    model, sources: list[list[int]], pad_id: int, eos_id: int, max_new_tokens: int
) -> list[list[int]]:
    """Greedy translations of source ids in batches, on the model's device: ids without
    ``<s>``/``</s>``/padding (what the task evaluates and ``atenea predict`` prints)."""
    device = device_of(model)
    outputs = []
    for start in range(0, len(sources), EVAL_BATCH):
        src_ids, src_mask = pad_rows(sources[start : start + EVAL_BATCH], pad_id)
        out = generate(
            model, src_ids.to(device), attention_mask=src_mask.to(device),
            max_new_tokens=max_new_tokens, eos_token_id=eos_id, pad_token_id=pad_id,
        )  # fmt: skip
        for row in out[:, 1:].tolist():
            outputs.append(row[: row.index(eos_id)] if eos_id in row else row)
    return outputs


def translation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match, BLEU and chrF of translations against their references."""
    return {
        "exact_match": metrics.exact_match(predictions, references),
        "bleu": metrics.bleu(predictions, references),
        "chrf": metrics.chrf(predictions, references),
    }
