"""The four training tasks: what model to build, how to batch, what loss, how to score.

    classify   text -> label            WordPiece + EncoderForSequenceClassification
    translate  source text -> target    byte-level BPE (chars for the built-in dates)
                                        + EncoderDecoderModel, greedy decoding to score
    lm         next token               byte-level BPE + DecoderModel on packed documents
    mlm        masked tokens            WordPiece + EncoderForMaskedLM (BERT's 80/10/10)

``build_task(name, data=..., size="tiny")`` reads the data, trains the tokenizer on the
training texts and returns a ``Task`` (the interface of docs/training.md); ``task.describe()``
is saved as ``task.json`` and ``from_description(info, folder)`` rebuilds the same task from it
and the saved tokenizer (for ``atenea evaluate`` and ``--resume``: nothing is retrained).

Size presets (``--size``; any config field can be changed with ``--set key=value``):

============  =====  =====  ===================  ======  ====  =======
family        size   dim    layers               heads   ffn   dropout
============  =====  =====  ===================  ======  ====  =======
encoder       tiny   128    2                    4       512   0.0
(classify,    small  256    4                    4       1024  0.1
mlm)          base   768    12                   12      3072  0.1
decoder (lm)  tiny   128    2                    4       512   0.0
              small  384    6                    6       1536  0.1
              base   768    12                   12      3072  0.1
translate     tiny   128    2 enc + 2 dec        4       512   0.0
              small  256    3 enc + 3 dec        4       1024  0.1
              base   512    6 enc + 6 dec        8       2048  0.1
============  =====  =====  ===================  ======  ====  =======

For translate, ``--set num_layers=N`` sets both stacks. tiny trains in minutes on two CPU
cores; dropout is off there because a tiny model trained briefly underfits, and dropout would
only slow it down.

Choices worth knowing:

- translate is pre-norm (``norm_position="pre"``): post-norm stacks need a long warmup and a
  small learning rate to train stably, which a run of a few minutes cannot afford. Its loss
  is cross entropy with label smoothing 0.1 (as in the paper; ``--set label_smoothing=0``).
  Scoring decodes greedily with ``atenea.generate``; the alignment pictures of ``finish`` show
  the cross-attention of the decoder layer whose rows are sharpest (lowest mean entropy,
  averaged over heads): the layer that does the aligning (usually the last; the title says).
- The built-in dates use characters, not BPE: the target is digit-by-digit copying and
  reformatting, and BPE merges digits into pieces ("19", "87", "-0") that depend on frequency,
  so the model would have to learn many output symbols for the same digits.
- The source has no special tokens (the encoder needs none), so ``atenea generate --prompt``
  (which encodes the prompt plainly) feeds a trained model exactly what it was trained on.
- classify pools the mean of the token states (``--set pooling=cls`` for BERT's [CLS]): an
  encoder pretrained by masked LM (``--init``) or for sentence embeddings (MiniLM) never
  trained its [CLS] state as a summary, and the mean is a good start for both.
- mlm's main metric is the perplexity of the masked tokens on a fixed masking of the
  validation set (lower is better; smoother than masked accuracy on small sets, and the same
  measure as lm's); the masked-token accuracy is reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.models import (
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    Tokenizer,
)

TASKS = ("classify", "translate", "lm", "mlm")
SIZES = ("tiny", "small", "base")
IGNORE = -100
EVAL_BATCH = 64

ENCODER_SIZES = {
    "tiny": dict(dim=128, num_layers=2, num_heads=4, ffn_hidden=512, dropout=0.0),
    "small": dict(dim=256, num_layers=4, num_heads=4, ffn_hidden=1024, dropout=0.1),
    "base": dict(dim=768, num_layers=12, num_heads=12, ffn_hidden=3072, dropout=0.1),
}
DECODER_SIZES = {
    "tiny": dict(dim=128, num_layers=2, num_heads=4, ffn_hidden=512, dropout=0.0),
    "small": dict(dim=384, num_layers=6, num_heads=6, ffn_hidden=1536, dropout=0.1),
    "base": dict(dim=768, num_layers=12, num_heads=12, ffn_hidden=3072, dropout=0.1),
}
SEQ2SEQ_SIZES = {
    "tiny": dict(dim=128, num_encoder_layers=2, num_decoder_layers=2, num_heads=4,
                 ffn_hidden=512, dropout=0.0),
    "small": dict(dim=256, num_encoder_layers=3, num_decoder_layers=3, num_heads=4,
                  ffn_hidden=1024, dropout=0.1),
    "base": dict(dim=512, num_encoder_layers=6, num_decoder_layers=6, num_heads=8,
                 ffn_hidden=2048, dropout=0.1),
}  # fmt: skip

# Options of a task that are not model config fields (``--set`` reaches them too).
TASK_OPTIONS = {
    "classify": {"pooling": "mean"},
    "translate": {"label_smoothing": 0.1},
    "lm": {},
    "mlm": {"mask_probability": 0.15},
}

# Per task: max_length, tokenizer kind and vocabulary size, and the training settings a run
# with no flags uses (the CLI reads them). Chosen so each default run is sensible on 2 cores.
DEFAULTS = {
    "classify": dict(max_length=128, tokenizer="wordpiece", vocab_size=4000,
                     steps=1500, batch_size=32, lr=1e-3, warmup=100),
    "translate": dict(max_length=64, tokenizer="bpe", vocab_size=2000,
                      steps=2000, batch_size=64, lr=2e-3, warmup=100),
    "lm": dict(max_length=128, tokenizer="bpe", vocab_size=4000,
               steps=600, batch_size=16, lr=2e-3, warmup=60),
    "mlm": dict(max_length=128, tokenizer="wordpiece", vocab_size=4000,
                steps=600, batch_size=32, lr=1e-3, warmup=60),
}  # fmt: skip

# Built-in data (docs/training.md): sizes of the default runs.
BUILTIN = {
    "classify": dict(name="sentiment", n_train=3000, n_validation=300),
    "translate": dict(name="dates", n_train=20000, n_validation=500, tokenizer="chars"),
    "lm": dict(name="stdlib", limit=120),
    "mlm": dict(name="stdlib", limit=120),
}


class TaskError(ValueError):
    """Bad task settings: an unknown task, size or ``--set`` key, data that does not fit."""


# -- settings ---------------------------------------------------------------------------------


def _convert(key: str, text, default):
    """``--set key=value``'s value as the type of the field's default."""
    if not isinstance(text, str):
        return text
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if default is None:  # optional fields (num_kv_heads, ...): a number or a word
            try:
                return int(text)
            except ValueError:
                return None if text.lower() == "none" else text
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise TaskError(f"--set {key}={text}: expected {kind}") from None
    return text


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["num_layers=2", "dropout=0.1"]`` -> ``{"num_layers": "2", ...}`` (typed later, by
    the task that knows the fields)."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TaskError(f"--set {item!r}: expected key=value, e.g. num_layers=2")
        overrides[key.strip()] = value.strip()
    return overrides


def _model_settings(name: str, size: str, overrides: dict) -> tuple[dict, dict]:
    """(config fields, task options) for ``name`` at ``size`` with ``overrides`` applied."""
    if size not in SIZES:
        raise TaskError(f"--size: expected one of {', '.join(SIZES)}, got {size!r}")
    config_class, sizes = {
        "classify": (EncoderConfig, ENCODER_SIZES),
        "mlm": (EncoderConfig, ENCODER_SIZES),
        "lm": (DecoderConfig, DECODER_SIZES),
        "translate": (EncoderDecoderConfig, SEQ2SEQ_SIZES),
    }[name]
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    fields = dict(sizes[size])
    if "attention_dropout" in defaults:
        fields["attention_dropout"] = 0.0 if size == "tiny" else 0.1
    options = dict(TASK_OPTIONS[name])
    # The task decides vocabulary sizes, special ids and shared embeddings.
    settable = {k for k in defaults if not k.endswith(("vocab_size", "_token_id"))}
    settable -= {"share_embeddings"}
    for key, value in overrides.items():
        if key in options:
            options[key] = _convert(key, value, options[key])
        elif key == "num_layers" and name == "translate":  # both stacks at once
            layers = _convert(key, value, 0)
            fields.update(num_encoder_layers=layers, num_decoder_layers=layers)
        elif key in settable:
            fields[key] = _convert(key, value, defaults[key])
        else:
            known = ", ".join(sorted(settable | set(options)))
            raise TaskError(f"--set {key}: not a setting of the {name} model; known: {known}")
    return fields, options


def _require(tokenizer: Tokenizer, role: str) -> int:
    token_id = tokenizer.token_id(role)
    if token_id is None:
        raise TaskError(f"tokenizer: has no {role} token; this task needs one")
    return token_id


def _pad(rows: list[list[int]], value: int) -> tuple[Tensor, Tensor]:
    """Right-pad lists of ids: ``(ids (B, L), mask (B, L))``, mask 1 for real tokens."""
    length = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


class _Evaluating:
    """``with _Evaluating(model):`` eval mode and no gradients, the previous mode restored."""

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


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- the tasks --------------------------------------------------------------------------------


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

    # subclasses fill these in
    def complete_config(self, fields: dict) -> dict:
        return fields

    def prepare(self, train: list[dict], validation: list[dict]) -> None:
        raise NotImplementedError

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

    def finish(self, model: nn.Module, folder) -> list[Path]:
        """Files written after training (translate: alignment pictures)."""
        return []


class ClassifyTask(Task):
    """``{"text", "label"}`` -> one label per text. Batch: ``input_ids``, ``attention_mask``
    ``(B, L)`` and ``labels (B,)``."""

    name, main_metric, higher_is_better = "classify", "accuracy", True

    def complete_config(self, fields):
        fields.update(vocab_size=self.tokenizer.vocab_size, pooler=False,
                      pad_token_id=_require(self.tokenizer, "pad"))  # fmt: skip
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        labels = self.info.get("labels") or sorted({e["label"] for e in train})
        if len(labels) < 2:
            raise TaskError(f"classify: needs at least two labels, the data has {labels}")
        self.info["labels"] = labels
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.pad_id = self.model_config["pad_token_id"]
        self.train_ids, self.train_labels = self._encode(train)
        self.val_ids, self.val_labels = self._encode(validation)

    def _encode(self, examples):
        unknown = sorted({e["label"] for e in examples} - set(self.label_ids))
        if unknown:
            raise TaskError(
                f"classify: labels {unknown} are not ones the model knows: {list(self.label_ids)}"
            )
        ids = self.tokenizer.encode_batch([e["text"] for e in examples], max_length=self.max_length)
        return ids, [self.label_ids[e["label"]] for e in examples]

    def build_model(self) -> nn.Module:
        model = EncoderForSequenceClassification(
            EncoderConfig(**self.model_config), len(self.label_ids), self.options["pooling"]
        )
        if self.init_state is not None:
            model.encoder.load_state_dict(self.init_state)
        return model

    def num_train_examples(self) -> int:
        return len(self.train_ids)

    def _batch(self, ids, labels, indices):
        input_ids, mask = _pad([ids[i] for i in indices], self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask,
                "labels": torch.tensor([labels[i] for i in indices])}  # fmt: skip

    def batch(self, indices, generator):
        return self._batch(self.train_ids, self.train_labels, indices)

    def loss(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss

    def tokens(self, batch):
        return int(batch["attention_mask"].sum())

    def evaluate(self, model, limit=None):
        from atenea.training import metrics

        count = len(self.val_ids) if limit is None else min(limit, len(self.val_ids))
        predictions = []
        with _Evaluating(model):
            device = _device(model)
            for start in range(0, count, EVAL_BATCH):
                rows = range(start, min(start + EVAL_BATCH, count))
                b = self._batch(self.val_ids, self.val_labels, rows)
                logits = model(b["input_ids"].to(device), b["attention_mask"].to(device)).logits
                predictions += logits.argmax(-1).tolist()
        references = self.val_labels[:count]
        return {"accuracy": metrics.accuracy(predictions, references),
                "macro_f1": metrics.macro_f1(predictions, references)}  # fmt: skip


class TranslateTask(Task):
    """``{"source", "target"}``: source ids (no special tokens) -> ``<s> target </s>``. Batch:
    ``src_ids``, ``src_mask`` ``(B, S)``; ``tgt_ids`` (``<s>`` + target), ``tgt_mask`` and
    ``labels`` (target + ``</s>``, -100 on padding) ``(B, T)``."""

    name, main_metric, higher_is_better = "translate", "exact_match", True

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(
            src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, share_embeddings=True,
            norm_position="pre", pad_token_id=_require(tok, "pad"),
            bos_token_id=_require(tok, "bos"), eos_token_id=_require(tok, "eos"),
        )  # fmt: skip
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

    def build_model(self) -> nn.Module:
        return EncoderDecoderModel(EncoderDecoderConfig(**self.model_config))

    def num_train_examples(self) -> int:
        return len(self.train_src)

    def _batch(self, sources, targets, indices):
        src_ids, src_mask = _pad([sources[i] for i in indices], self.pad_id)
        tgt_ids, tgt_mask = _pad([[self.bos_id] + targets[i] for i in indices], self.pad_id)
        labels, _ = _pad([targets[i] + [self.eos_id] for i in indices], IGNORE)
        return {"src_ids": src_ids, "src_mask": src_mask, "tgt_ids": tgt_ids,
                "tgt_mask": tgt_mask, "labels": labels}  # fmt: skip

    def batch(self, indices, generator):
        return self._batch(self.train_src, self.train_tgt, indices)

    def loss(self, model, batch):
        logits = model(batch["src_ids"], batch["tgt_ids"], batch["src_mask"],
                       batch["tgt_mask"]).logits  # fmt: skip
        return F.cross_entropy(
            logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE,
            label_smoothing=float(self.options["label_smoothing"]),
        )  # fmt: skip

    def tokens(self, batch):
        return int(batch["src_mask"].sum() + batch["tgt_mask"].sum())

    def translate(self, model, sources: list[list[int]]) -> list[list[int]]:
        """Greedy translations (ids, without ``<s>``/``</s>``/padding) of source ids."""
        import atenea
        from atenea.training.distributed import unwrap

        model = unwrap(model)
        outputs = []
        with _Evaluating(model):
            device = _device(model)
            for start in range(0, len(sources), EVAL_BATCH):
                src_ids, src_mask = _pad(sources[start : start + EVAL_BATCH], self.pad_id)
                out = atenea.generate(
                    model, src_ids.to(device), attention_mask=src_mask.to(device),
                    max_new_tokens=self.max_length, eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                )  # fmt: skip
                for row in out[:, 1:].tolist():
                    outputs.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return outputs

    def evaluate(self, model, limit=None):
        from atenea.training import metrics

        count = len(self.val_src) if limit is None else min(limit, len(self.val_src))
        generated = self.translate(model, self.val_src[:count])
        predictions = [self.tokenizer.decode(ids).strip() for ids in generated]
        references = [t.strip() for t in self.val_targets[:count]]
        return {
            "exact_match": metrics.exact_match(predictions, references),
            "bleu": metrics.bleu(predictions, references),
            "chrf": metrics.chrf(predictions, references),
        }

    def finish(self, model, folder, count: int = 4) -> list[Path]:
        """``folder/alignments/alignment-{i}.png`` for the first ``count`` validation examples:
        the decoder's cross-attention on (source, generated target), heads averaged, of the
        sharpest layer. Rows: each generated token (the row that wrote it); columns: source."""
        from atenea.inspect.plots import heatmap_png
        from atenea.inspect.seq2seq import sharpest_layer
        from atenea.training.distributed import unwrap

        model = unwrap(model)
        sources = self.val_src[:count]
        generated = self.translate(model, sources)
        paths = []
        with _Evaluating(model):
            device = _device(model)
            for i, (src, out) in enumerate(zip(sources, generated)):
                written = out + [self.eos_id]  # what each decoder row produced
                src_ids = torch.tensor([src], device=device)
                tgt_ids = torch.tensor([[self.bos_id] + out], device=device)
                cross = model(src_ids, tgt_ids, output_attentions=True).cross_attentions
                maps = torch.stack([w[0].float() for w in cross])  # (layers, heads, T, S)
                layer = sharpest_layer(maps)
                title = (
                    f"{self.val_sources[i]!r} -> {self.tokenizer.decode(out)!r}\n"
                    f"cross-attention, decoder layer {layer + 1}/{len(cross)}, heads averaged"
                )
                path = Path(folder) / "alignments" / f"alignment-{i}.png"
                paths.append(
                    heatmap_png(
                        maps[layer].mean(0).cpu(),
                        self._pieces(written),
                        path,
                        title,
                        key_tokens=self._pieces(src),
                    )  # fmt: skip
                )
        return paths

    def _pieces(self, ids: list[int]) -> list[str]:
        """Readable token labels: each id decoded on its own (byte-level BPE shows spaces)."""
        special = {self.eos_id: "</s>", self.bos_id: "<s>", self.pad_id: "<pad>"}
        pieces = [special.get(i) or self.tokenizer.decode([i]) for i in ids]
        return [p.replace(" ", "\u2423") if p.strip() else "\u2423" for p in pieces]  # ␣


class LanguageModelTask(Task):
    """Documents, each followed by ``</s>``, concatenated and cut into rows of ``max_length``
    tokens. Batch: ``input_ids``, ``document_ids`` (-1 on the padding of the last row) and
    ``labels`` ``(B, L)``: the input ids, -100 where a token starts a new document (it must not
    be predicted from the previous one) and on padding."""

    name, main_metric, higher_is_better = "lm", "perplexity", False

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(
            vocab_size=tok.vocab_size, positions="learned", pad_token_id=_require(tok, "pad"),
            bos_token_id=_require(tok, "bos"), eos_token_id=_require(tok, "eos"),
        )  # fmt: skip
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        self.train_rows = self.pack(train)
        self.val_rows = self.pack(validation)

    def pack(self, documents: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        """``(input_ids, document_ids, labels)``, each ``(rows, max_length)``."""
        eos, pad = self.model_config["eos_token_id"], self.model_config["pad_token_id"]
        encoded = self.tokenizer.encode_batch(
            [d["text"] for d in documents], truncation=False, add_special_tokens=False
        )
        stream, owners = [], []
        for index, ids in enumerate(encoded):
            stream += ids + [eos]
            owners += [index] * (len(ids) + 1)
        length = self.max_length
        rows = max(1, math.ceil(len(stream) / length))
        fill = rows * length - len(stream)
        input_ids = torch.tensor(stream + [pad] * fill).view(rows, length)
        document_ids = torch.tensor(owners + [-1] * fill).view(rows, length)
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

    @staticmethod
    def _batch(rows, indices):
        chosen = torch.as_tensor(list(indices), dtype=torch.long)
        input_ids, document_ids, labels = (t.index_select(0, chosen) for t in rows)
        return {"input_ids": input_ids, "document_ids": document_ids, "labels": labels}

    def batch(self, indices, generator):
        return self._batch(self.train_rows, indices)

    def loss(self, model, batch):
        return model(
            batch["input_ids"], document_ids=batch["document_ids"], labels=batch["labels"]
        ).loss

    def tokens(self, batch):
        return int((batch["document_ids"] >= 0).sum())

    def evaluate(self, model, limit=None):
        from atenea.training import metrics

        total = self.val_rows[0].shape[0]
        count = total if limit is None else min(limit, total)
        nll, predicted = 0.0, 0
        with _Evaluating(model):
            device = _device(model)
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


class MaskedLanguageModelTask(Task):
    """Documents cut into chunks of ``max_length - 2`` tokens, each ``[CLS] chunk [SEP]``.
    BERT's masking: ``mask_probability`` (15%) of the real non-special tokens are chosen; of
    those 80% become [MASK], 10% a random token, 10% stay. ``labels``: the original token where
    chosen, -100 elsewhere. All randomness comes from the ``generator`` given to ``batch``."""

    name, main_metric, higher_is_better = "mlm", "perplexity", False
    EVAL_SEED = 1234

    def complete_config(self, fields):
        tok = self.tokenizer
        fields.update(vocab_size=tok.vocab_size, pooler=False, pad_token_id=_require(tok, "pad"))
        fields["max_positions"] = max(fields.get("max_positions", 0), self.max_length)
        return fields

    def prepare(self, train, validation):
        tok = self.tokenizer
        self.pad_id, self.mask_id = self.model_config["pad_token_id"], _require(tok, "mask")
        self.cls_id, self.sep_id = _require(tok, "cls"), _require(tok, "sep")
        specials = {tok.token_id(role) for role in tok.special_tokens} - {None}
        self.special_ids = torch.tensor(sorted(specials), dtype=torch.long)
        vocab = torch.arange(tok.vocab_size)
        self.random_ids = vocab[~torch.isin(vocab, self.special_ids)]
        self.train_chunks = self.chunk(train)
        self.val_chunks = self.chunk(validation)

    def chunk(self, documents: list[dict]) -> list[list[int]]:
        body = self.max_length - 2
        if body < 1:
            raise TaskError(f"--max-length: mlm needs at least 3 tokens, got {self.max_length}")
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

    def mask(self, input_ids: Tensor, attention_mask: Tensor, generator: torch.Generator):
        """``(masked input_ids, labels)`` of a padded batch ``(B, L)``; see the class."""
        eligible = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        select = torch.rand(input_ids.shape, generator=generator)
        roll = torch.rand(input_ids.shape, generator=generator)
        random_pick = torch.randint(len(self.random_ids), input_ids.shape, generator=generator)
        chosen = (select < float(self.options["mask_probability"])) & eligible
        if not chosen.any() and eligible.any():  # a loss needs at least one target
            chosen.view(-1)[int(eligible.view(-1).nonzero()[0])] = True
        masked = input_ids.clone()
        masked[chosen & (roll < 0.8)] = self.mask_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = self.random_ids[random_pick[swap]]
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
        return masked, labels

    def _batch(self, chunks, indices, generator):
        input_ids, mask = _pad([chunks[i] for i in indices], self.pad_id)
        masked, labels = self.mask(input_ids, mask, generator)
        return {"input_ids": masked, "attention_mask": mask, "labels": labels}

    def batch(self, indices, generator):
        return self._batch(self.train_chunks, indices, generator)

    def loss(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss

    def tokens(self, batch):
        return int(batch["attention_mask"].sum())

    def evaluate(self, model, limit=None):
        from atenea.training import metrics

        count = len(self.val_chunks) if limit is None else min(limit, len(self.val_chunks))
        generator = torch.Generator().manual_seed(self.EVAL_SEED)  # the same masking each time
        nll, right, predicted = 0.0, 0, 0
        with _Evaluating(model):
            device = _device(model)
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
        return {"perplexity": metrics.perplexity(nll, predicted),
                "accuracy": right / max(predicted, 1)}  # fmt: skip


TASK_CLASSES = {
    "classify": ClassifyTask,
    "translate": TranslateTask,
    "lm": LanguageModelTask,
    "mlm": MaskedLanguageModelTask,
}


# -- building and rebuilding ------------------------------------------------------------------


def _paths(data) -> list[str]:
    return [str(p) for p in ([data] if isinstance(data, (str, Path)) else data)]


def _read(name: str, data, validation, columns: dict, seed: int):
    """The Split of user files (``data``: a path or a list of paths) or of a Split given as
    is (anything with ``train`` and ``validation``)."""
    if hasattr(data, "train") and hasattr(data, "validation"):
        return data
    from atenea.training import data as reading

    paths = _paths(data)
    if name in ("classify", "translate") and len(paths) != 1:
        raise TaskError(f"--data: {name} reads one file, got {len(paths)}: {' '.join(paths)}")
    if name == "classify":
        return reading.read_classify(paths[0], columns["text"], columns["label"],
                                     validation=validation, seed=seed)  # fmt: skip
    if name == "translate":
        return reading.read_translate(paths[0], columns["source"], columns["target"],
                                      validation=validation, seed=seed)  # fmt: skip
    return reading.read_texts(paths, validation=validation, seed=seed)


def _builtin(name: str, seed: int):
    import importlib

    spec = BUILTIN[name]
    dataset = importlib.import_module(f"atenea.training.datasets.{spec['name']}")
    if name in ("classify", "translate"):
        return dataset.split(spec["n_train"], spec["n_validation"], seed=seed)
    return dataset.split(limit=spec["limit"])


def _training_texts(name: str, examples: list[dict]) -> list[str]:
    if name == "translate":  # one shared vocabulary for both sides
        return [e["source"] for e in examples] + [e["target"] for e in examples]
    return [e["text"] for e in examples]


def _pretrained_encoder(init) -> tuple[dict, Tokenizer, dict]:
    """(encoder config fields, tokenizer, encoder weights) of an mlm checkpoint folder or of
    ``"minilm"`` (any BERT-style checkpoint ``load_pretrained`` reads)."""
    import atenea
    from atenea.models import CheckpointError, EncoderModel

    try:
        model, tokenizer = atenea.load_pretrained(init)
    except CheckpointError as error:
        raise TaskError(f"--init: {error}") from None
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, EncoderModel):
        raise TaskError(
            f"--init {init}: expected an encoder checkpoint, got {type(model).__name__}"
        )
    if tokenizer is None:
        raise TaskError(f"--init {init}: the folder has no tokenizer.json")
    # The pooler is not used (classify pools the mean) and would be an unused parameter.
    fields = {**dataclasses.asdict(encoder.config), "pooler": False}
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    return fields, tokenizer, state


def build_task(
    name: str,
    *,
    data=None,
    validation=None,
    size: str = "tiny",
    overrides: dict | None = None,
    max_length: int | None = None,
    tokenizer_kind: str | None = None,
    vocab_size: int | None = None,
    init=None,
    seed: int = 0,
    text_column: str = "text",
    label_column: str = "label",
    source_column: str = "source",
    target_column: str = "target",
    tokenizer: Tokenizer | None = None,
) -> Task:
    """A task on the user's data (``data``: a file, a list of files / folders / globs for
    lm and mlm, or a ``Split``) or, with ``data=None``, on the built-in data of
    docs/training.md. The tokenizer is trained on the training texts unless one is given
    (or ``init`` brings its own). ``overrides``: ``{"num_layers": "2", ...}`` (strings are
    converted to the field's type). ``init`` (classify only): an mlm checkpoint folder or
    ``"minilm"``: its encoder weights and tokenizer, a new head."""
    if name not in TASKS:
        raise TaskError(f"task: expected one of {', '.join(TASKS)}, got {name!r}")
    defaults, overrides = DEFAULTS[name], dict(overrides or {})
    explicit_length = max_length is not None
    max_length = max_length or defaults["max_length"]
    if max_length < 2:
        raise TaskError(f"--max-length: expected an integer >= 2, got {max_length}")
    fields, options = _model_settings(name, size, overrides)
    columns = {"text": text_column, "label": label_column,
               "source": source_column, "target": target_column}  # fmt: skip
    if data is None:
        if validation is not None:
            raise TaskError("--validation: give --data too (the built-in data has its own)")
        split = _builtin(name, seed)
        source = {"builtin": BUILTIN[name]}
        kind = tokenizer_kind or BUILTIN[name].get("tokenizer") or defaults["tokenizer"]
    else:
        split = _read(name, data, validation, columns, seed)
        is_split = hasattr(data, "train")
        source = {"data": None if is_split else _paths(data),
                  "validation": None if validation is None else str(validation)}  # fmt: skip
        kind = tokenizer_kind or defaults["tokenizer"]
    init_state = None
    if init is not None:
        if name != "classify":
            raise TaskError(f"--init: only classify starts from a pretrained encoder, not {name}")
        pretrained, tokenizer, init_state = _pretrained_encoder(init)
        if max_length > pretrained["max_positions"]:  # the encoder has no positions beyond
            if explicit_length:
                raise TaskError(
                    f"--max-length: {init} has positions for {pretrained['max_positions']} "
                    f"tokens, got {max_length}"
                )
            max_length = pretrained["max_positions"]
        fields = {**pretrained, **{k: v for k, v in fields.items() if k in overrides}}
        kind = "pretrained"
    if tokenizer is None:
        from atenea.training.tokenizers import train_tokenizer

        # Encoders read [CLS] text [SEP]; decoders get their <s> / </s> from the task.
        template = "bert" if name in ("classify", "mlm") else "none"
        tokenizer = train_tokenizer(
            _training_texts(name, split.train), kind=kind,
            vocab_size=vocab_size or defaults["vocab_size"], template=template,
            max_length=max_length,
        )  # fmt: skip
    elif kind != "pretrained" and tokenizer_kind is None:
        kind = "given"
    info = {
        **source,
        "size": size,
        "overrides": overrides,
        "seed": seed,
        "columns": columns,
        "tokenizer": {"kind": kind, "vocab_size": tokenizer.vocab_size},
        "init": None if init is None else str(init),
    }
    task = TASK_CLASSES[name](
        split.train, split.validation, tokenizer, max_length=max_length, model_config=fields,
        options=options, info=info,
    )  # fmt: skip
    task.init_state = init_state
    return task


def from_description(info: dict, folder, data=None) -> Task:
    """Rebuild the task of ``task.json`` (``info``) with the tokenizer saved in ``folder``.
    ``data=None``: the data it was trained on (for ``--resume``); a file: score that file
    (every example of it lands in the validation set, for ``atenea evaluate``)."""
    name = info.get("task")
    if name not in TASKS:
        raise TaskError(f"{folder}/task.json: unknown task {name!r}")
    folder = Path(folder)
    try:
        tokenizer = Tokenizer.from_folder(folder)
    except (FileNotFoundError, ValueError) as error:
        raise TaskError(str(error)) from None
    columns = info.get("columns") or {}
    seed = info.get("seed", 0)
    if data is not None:
        # Read the file as both train and validation: all of it is scored.
        paths = _paths(data)
        one_file = name in ("classify", "translate") and len(paths) == 1
        split = _read(name, paths, paths[0] if one_file else None,
                      {"text": "text", "label": "label", "source": "source", "target": "target",
                       **columns}, seed)  # fmt: skip
        if name in ("lm", "mlm"):
            split.validation = split.train + split.validation
    elif info.get("data"):
        split = _read(name, info["data"], info.get("validation"), columns, seed)
    elif "builtin" in info:
        split = _builtin(name, seed)
    else:
        raise TaskError(f"{folder}: the task was trained on examples in memory; pass data=")
    keep = ("data", "validation", "builtin", "size", "overrides", "seed", "columns",
            "tokenizer", "init", "labels", "training")  # fmt: skip
    return TASK_CLASSES[name](
        split.train, split.validation, tokenizer, max_length=info["max_length"],
        model_config=info["model_config"], options=info.get("options") or {},
        info={k: info[k] for k in keep if k in info},
    )  # fmt: skip
