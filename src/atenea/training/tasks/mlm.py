"""mlm: masked tokens. WordPiece + ``EncoderForMaskedLM`` with BERT's 80/10/10 masking.

The main metric is the perplexity of the masked tokens on a fixed masking of the validation
set (lower is better; smoother than masked accuracy on small sets, and the same measure as
lm's); the masked-token accuracy is reported beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.models import EncoderConfig, EncoderForMaskedLM
from atenea.training import metrics
from atenea.training.sampling import example_generators
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
from atenea.training.tasks.settings import TaskError

# The suggested input of a trained model: the first tokens of a validation chunk.
PROMPT_TOKENS = 12


class MaskedLanguageModelTask(Task):
    """Documents cut into chunks of ``max_length - 2`` tokens, each ``[CLS] chunk [SEP]``.
    BERT's masking: ``mask_probability`` (15%) of the real non-special tokens are chosen; of
    those 80% become [MASK], 10% a random token, 10% stay. ``labels``: the original token where
    chosen, -100 elsewhere. All randomness comes from the ``generator`` given to ``batch``,
    through one generator per example (``example_generators``): a chunk is masked the same way
    whichever DDP rank's shard it lands in, so two ranks train what one process trains."""

    name, main_metric, higher_is_better = "mlm", "perplexity", False
    EVAL_SEED = 1234

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(vocab_size=tok.vocab_size, pooler=False,
                      pad_token_id=require_token(tok, "pad"))  # fmt: skip
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        tok = self.tokenizer
        self.pad_id = self.model_config["pad_token_id"]
        self.mask_id = require_token(tok, "mask")
        self.cls_id, self.sep_id = require_token(tok, "cls"), require_token(tok, "sep")
        specials = {tok.token_id(role) for role in tok.special_tokens} - {None}
        self.special_ids = torch.tensor(sorted(specials), dtype=torch.long)
        vocab = torch.arange(tok.vocab_size)
        self.random_ids = vocab[~torch.isin(vocab, self.special_ids)]
        self.train_chunks = self.chunk(train)
        self.val_chunks = self.chunk(validation)

    def example_inputs(self, count):
        return [self.tokenizer.decode(chunk[:PROMPT_TOKENS]) for chunk in self.val_chunks[:count]]

    def chunk(self, documents: list[dict]) -> list[list[int]]:
        body = self.max_length - 2
        if body < 1:
            raise TaskError(f"max_length: mlm needs at least 3 tokens, got {self.max_length}")
        encoded = self.tokenizer.encode_batch(
            [d["text"] for d in documents], truncation=False, add_special_tokens=False
        )
        return [
            [self.cls_id] + ids[start : start + body] + [self.sep_id]
            for ids in encoded
            for start in range(0, len(ids), body)
        ]

    def build_model(self) -> nn.Module:
        return EncoderForMaskedLM(EncoderConfig(**self.model_config))

    def num_train_examples(self) -> int:
        return len(self.train_chunks)

    def num_validation_examples(self) -> int:
        return len(self.val_chunks)

    def mask(self, input_ids: Tensor, attention_mask: Tensor, generators: list[torch.Generator]):
        """``(masked input_ids, labels)`` of a padded batch ``(B, L)``, row ``b`` drawn from
        ``generators[b]`` over its own tokens only (so the padded width draws nothing); see the
        class. A batch may choose no token (short rows): its loss is then 0, not a made-up
        target."""
        real = attention_mask.bool()
        select = torch.ones(input_ids.shape)  # padding: never chosen
        roll = torch.zeros(input_ids.shape)
        random_pick = torch.zeros(input_ids.shape, dtype=torch.long)
        for row, generator in enumerate(generators):
            n = int(real[row].sum())
            select[row, real[row]] = torch.rand(n, generator=generator)
            roll[row, real[row]] = torch.rand(n, generator=generator)
            random_pick[row, real[row]] = torch.randint(len(self.random_ids), (n,),
                                                        generator=generator)  # fmt: skip
        eligible = real & ~torch.isin(input_ids, self.special_ids)
        chosen = (select < float(self.options["mask_probability"])) & eligible
        masked = input_ids.clone()
        masked[chosen & (roll < 0.8)] = self.mask_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = self.random_ids[random_pick[swap]]
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
        return masked, labels

    def _batch(self, chunks, indices, generator):
        input_ids, mask = pad_rows([chunks[i] for i in indices], self.pad_id)
        masked, labels = self.mask(input_ids, mask, example_generators(generator, indices))
        return {"input_ids": masked, "attention_mask": mask, "labels": labels}

    def batch(self, indices, generator):
        return self._batch(self.train_chunks, indices, generator)

    def loss(self, model, batch):
        """The mean over the chosen tokens of the whole micro-batch (under DDP, of every rank's
        shard: ``mean_over_ranks``; rows hold different numbers of them)."""
        logits = model(batch["input_ids"], batch["attention_mask"]).logits
        return token_mean(logits, batch["labels"])

    def tokens(self, batch):
        return int(batch["attention_mask"].sum())

    def evaluate(self, model, limit=None):
        count = len(self.val_chunks) if limit is None else min(limit, len(self.val_chunks))
        generator = torch.Generator().manual_seed(self.EVAL_SEED)  # the same masking each time
        nll, right, predicted = 0.0, 0, 0
        with Evaluating(model):
            device = device_of(model)
            for start in range(0, count, EVAL_BATCH):
                rows = range(start, min(start + EVAL_BATCH, count))
                b = self._batch(self.val_chunks, rows, generator)
                logits = model(b["input_ids"].to(device), b["attention_mask"].to(device)).logits
                labels = b["labels"].to(device)
                chosen = labels != IGNORE
                nll += float(F.cross_entropy(logits[chosen].float(), labels[chosen],
                                             reduction="sum"))  # fmt: skip
                right += int((logits[chosen].argmax(-1) == labels[chosen]).sum())
                predicted += int(chosen.sum())
        if not predicted:  # the same chunks and masking each time: met at the first evaluation
            share = float(self.options["mask_probability"])
            raise TaskError(
                f"validation: the evaluation's fixed masking ({share:.0%} of the tokens) chose "
                f"none in its {count} chunk(s); give more validation text"
                + (" or a larger eval_limit" if limit is not None else "")
            )
        return {"perplexity": metrics.perplexity(nll, predicted),
                "accuracy": right / max(predicted, 1)}  # fmt: skip
