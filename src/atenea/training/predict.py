"""Predictions of a trained model folder, for every task ``atenea train`` writes.

    predictor = Predictor.from_folder("runs/reviews")
    predictor.predict(["a great film", "dull"])
    # [{"input": "a great film", "prediction": "good",
    #   "probabilities": {"bad": 0.04, "good": 0.96}}, ...]

- classify: the most probable label and every label's probability (softmax of the logits),
  the label names from ``model.config.id2label`` (written by the classify task; older folders:
  ``task.json``'s ``labels``);
- translate: the greedy translation (as the task's evaluation writes it);
- lm: the greedy continuation of the text, ``max_new_tokens`` tokens at most.

A masked LM has nothing to predict from a text alone (``atenea explain`` shows what it reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from atenea.generation import generate
from atenea.models import Tokenizer, load_pretrained
from atenea.training.tasks import read_description
from atenea.training.tasks.base import EVAL_BATCH, pad_rows
from atenea.training.tasks.settings import TaskError

PREDICTABLE = ("classify", "translate", "lm", "images")


@dataclass
class Predictor:
    """A trained model, its tokenizer and its task (``task.json``), ready to predict."""

    task: str
    model: nn.Module
    tokenizer: Tokenizer | None  # None for an image model
    max_length: int
    labels: list[str] | None = None  # classify: label of each class index
    max_new_tokens: int = 40  # lm: the continuation's length at most

    @classmethod
    def from_folder(cls, folder, max_new_tokens: int = 40, device=None) -> Predictor:
        """Read a folder written by ``atenea train`` (``TaskError`` for a task without
        predictions, or a folder without a tokenizer); the model goes to ``device``."""
        folder = Path(folder)
        info = read_description(folder)
        if info["task"] not in PREDICTABLE:
            raise TaskError(
                f"model: a {info['task']} model has nothing to predict from a text; predictions "
                f"are for {', '.join(PREDICTABLE)} models (atenea explain shows what it reads)"
            )
        model, tokenizer = load_pretrained(folder)
        if tokenizer is None and info["task"] != "images":  # images: pixels, no tokens
            raise TaskError(f"model: {folder} has no tokenizer.json")
        if device is not None:
            model.to(device)
        labels = None
        if info["task"] == "images":
            return cls("images", model.eval(), None, model.config.image_size, list(model.labels))
        if info["task"] == "classify":
            id2label = getattr(model.config, "id2label", None)
            labels = [id2label[i] for i in sorted(id2label)] if id2label else info.get("labels")
        return cls(info["task"], model.eval(), tokenizer, int(info["max_length"]), labels,
                   max_new_tokens)  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, texts: list[str], progress: bool = False) -> list[dict]:
        """One ``{"input", "prediction"}`` per text (classify adds ``"probabilities"``);
        ``progress``: a bar on stderr when it is a terminal."""
        from tqdm.auto import tqdm

        step = 1 if self.task not in ("classify", "images", "translate") else EVAL_BATCH
        results: list[dict] = []
        with tqdm(total=len(texts), desc="predict", unit="input", leave=False,
                  disable=None if progress else True) as bar:  # fmt: skip
            for start in range(0, len(texts), step):  # one batch (or prompt) at a time
                chunk = texts[start : start + step]
                results += self._predict(chunk)
                bar.update(len(chunk))
        return results

    def _predict(self, texts: list[str]) -> list[dict]:
        if self.task == "classify":
            return self._classify(texts)
        if self.task == "images":
            return self._classify_images(texts)
        if self.task == "translate":
            return self._translate(texts)
        return [{"input": text, "prediction": self._continue(text)} for text in texts]

    def _classify(self, texts: list[str]) -> list[dict]:
        return classify_texts(self.model, self.tokenizer, texts, self.max_length, self.labels)

    def _classify_images(self, paths: list[str]) -> list[dict]:
        """The class of each image file, read and normalised as in training."""
        from atenea.models.vit import pixels
        from atenea.training.datasets.images import image_for_model

        config = self.model.config
        results = []
        for start in range(0, len(paths), EVAL_BATCH):
            chunk = paths[start : start + EVAL_BATCH]
            images = torch.stack([
                torch.from_numpy(image_for_model(p, config.image_size, config.num_channels))
                for p in chunk
            ])  # fmt: skip
            pixel_values = pixels(images.float() / 255, config).to(self.device)  # at its size
            probabilities = torch.softmax(self.model(pixel_values).logits.float(), -1)
            for path, row in zip(chunk, probabilities.tolist()):
                best = max(range(len(row)), key=row.__getitem__)
                results.append({"input": path, "prediction": self.labels[best],
                                "probabilities": dict(zip(self.labels, row))})  # fmt: skip
        return results

    def _translate(self, texts: list[str]) -> list[dict]:
        from atenea.training.tasks.translate import greedy_translate

        eos, pad = self.tokenizer.token_id("eos"), self.tokenizer.token_id("pad")
        sources = self.tokenizer.encode_batch(texts, truncation=False, add_special_tokens=False)
        sources = [row[: self.max_length] for row in sources]
        outputs = greedy_translate(self.model, sources, pad, eos, self.max_length)
        return [{"input": text, "prediction": self.tokenizer.decode(row).strip()}
                for text, row in zip(texts, outputs)]  # fmt: skip

    def _continue(self, text: str) -> str:
        ids = self.tokenizer.encode(text)
        if not ids:
            raise TaskError(f"input: the tokenizer turned {text!r} into no tokens")
        # The prompt's last tokens, leaving room for the continuation among the positions.
        room = getattr(self.model.config, "max_positions", 0) - self.max_new_tokens
        if room < 1:
            raise TaskError(
                f"max_new_tokens: {self.max_new_tokens} leaves no room for a prompt in the "
                f"model's {self.model.config.max_positions} positions"
            )
        prompt = torch.tensor([ids[-room:]], device=self.device)
        out = generate(self.model, prompt, max_new_tokens=self.max_new_tokens)
        return self.tokenizer.decode(out[0, prompt.shape[1] :].tolist())


@torch.no_grad()
def classify_texts(model, tokenizer, texts, max_length, labels=None) -> list[dict]:
    """``{"input", "prediction", "probabilities"}`` of a sequence classifier for each text:
    the softmax of its logits by label name (``labels``, else ``model.config.id2label``, else
    ``LABEL_i``)."""
    if labels is None:
        id2label = getattr(model.config, "id2label", None) or {}
        labels = [id2label[i] for i in sorted(id2label)] or None
    labels = labels or [f"LABEL_{i}" for i in range(model.num_labels)]
    results = []
    for start in range(0, len(texts), EVAL_BATCH):
        chunk = texts[start : start + EVAL_BATCH]
        ids = tokenizer.encode_batch(chunk, max_length=max_length)
        input_ids, mask = pad_rows(ids, model.config.pad_token_id)
        device = next(model.parameters()).device
        input_ids, mask = input_ids.to(device), mask.to(device)
        probabilities = torch.softmax(model(input_ids, mask).logits.float(), -1)
        for text, row in zip(chunk, probabilities.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"input": text, "prediction": labels[best],
                            "probabilities": dict(zip(labels, row))})  # fmt: skip
    return results
