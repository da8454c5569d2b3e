"""images: picture -> class. ``ViTForImageClassification`` on patches of the image.

Data (``training/datasets/images.py``): the built-in Fashion-MNIST (else MNIST 5k, else the
8x8 digits), a named built-in set (``data="digits"``), or the user's folder of class
subfolders / CSV of ``path,label``. Images are kept as ``uint8`` and normalised per batch by
the training set's per-channel mean and std, which the model's config records (so
``atenea explain --image`` reads a new picture the same way).

The model's grid follows the data: 28x28 images in 4x4 patches (49 + [CLS] tokens), 8x8
digits in 2x2 patches; user images are resized to ``image_size`` (32 unless overridden).
Augmentation (``overrides={"augment": "crop"}`` or ``"crop+flip"``): each training image
shifted by up to 2 pixels (zero padding, as CIFAR training does) and, with flip, mirrored left
to right half of the time; drawn from the batch's generator, so a resumed run sees the same
(and per example, so DDP ranks see what one process sees).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atenea.models import ViTConfig, ViTForImageClassification
from atenea.training import metrics
from atenea.training.datasets import images as reading
from atenea.training.sampling import example_generators
from atenea.training.tasks.base import EVAL_BATCH, Evaluating, Task, device_of
from atenea.training.tasks.settings import TaskError, model_settings

AUGMENTS = ("none", "crop", "crop+flip")
# Run settings of each built-in set that differ from DEFAULTS["images"] (Fashion-MNIST's):
# the small sets are learned in fewer steps (digits: 0.972 after 1000).
BUILTIN_RUNS = {"fashion-mnist": {}, "mnist-5k": {"steps": 1500, "warmup": 100},
                "digits": {"steps": 1000, "warmup": 100}}  # fmt: skip
USER_IMAGE_SIZE = 32
SHIFT = 2  # pixels an augmented image moves at most


def patch_size_for(image_size: int) -> int:
    """4 for images of 16 pixels and more (28 -> a 7x7 grid), else 2 (8 -> 4x4)."""
    for patch in (4, 2, 1):
        if image_size % patch == 0 and (patch < 4 or image_size >= 16):
            return patch
    return 1


class ImagesTask(Task):
    """``ImageSet`` s of train and validation images. Batch: ``pixel_values (B, C, S, S)``
    float, normalised, and ``labels (B,)``."""

    name, main_metric, higher_is_better = "images", "accuracy", True

    def complete_config(self, fields):
        return fields  # filled in prepare, from the images

    def prepare(self, train, validation):
        if train.classes != validation.classes:
            raise TaskError("images: train and validation have different classes")
        if len(train.classes) < 2:
            raise TaskError(f"images: needs at least two classes, the data has {train.classes}")
        if self.options.get("augment", "none") not in AUGMENTS:
            raise TaskError(f"overrides: augment: expected one of {', '.join(AUGMENTS)}, got "
                            f"{self.options['augment']!r}")  # fmt: skip
        self.train, self.validation = train, validation
        self.info["labels"] = list(train.classes)
        _, channels, size, _ = train.images.shape
        fields = self.model_config
        fields.update(image_size=size, num_channels=channels)
        fields.setdefault("patch_size", patch_size_for(size))
        if "image_mean" not in fields:  # measured once, on the training images
            pixels = train.images[:20000].float().div(255).transpose(0, 1).flatten(1)
            fields["image_mean"] = [round(v, 4) for v in pixels.mean(1).tolist()]
            fields["image_std"] = [round(max(v, 1e-3), 4) for v in pixels.std(1).tolist()]
        self.mean = torch.tensor(fields["image_mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(fields["image_std"]).view(1, -1, 1, 1)

    def example_inputs(self, count):
        return list((self.validation.sources or [])[:count])

    def build_model(self) -> nn.Module:
        try:
            config = ViTConfig(**self.model_config)
        except ValueError as error:
            raise TaskError(f"overrides: {error}") from None
        return ViTForImageClassification(config, len(self.train.classes), self.train.classes)

    def num_train_examples(self) -> int:
        return len(self.train)

    def num_validation_examples(self) -> int:
        return len(self.validation)

    def _pixels(self, images: Tensor) -> Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def _augment(self, images: Tensor, indices, generator: torch.Generator) -> Tensor:
        """Shift each image by up to ``SHIFT`` pixels (zero padding) and maybe mirror it. Each
        example draws from its own generator (``example_generators``), so under DDP a rank's
        half of a batch is augmented as one process augments that half."""
        _, _, height, width = images.shape
        padded = F.pad(images, (SHIFT,) * 4)
        flip = self.options["augment"] == "crop+flip"
        shifted = []
        for image, own in zip(padded, example_generators(generator, indices)):
            y, x = torch.randint(0, 2 * SHIFT + 1, (2,), generator=own).tolist()
            image = image[:, y : y + height, x : x + width]
            if flip and float(torch.rand(1, generator=own)) < 0.5:
                image = image.flip(-1)
            shifted.append(image)
        return torch.stack(shifted)

    def batch(self, indices, generator):
        chosen = torch.as_tensor(list(indices), dtype=torch.long)
        images = self.train.images[chosen]
        if self.options.get("augment", "none") != "none":
            images = self._augment(images, chosen.tolist(), generator)
        labels = torch.tensor([self.train.labels[i] for i in chosen.tolist()])
        return {"pixel_values": self._pixels(images), "labels": labels}

    def loss(self, model, batch):
        return model(batch["pixel_values"], labels=batch["labels"]).loss

    def tokens(self, batch):
        """Patches + [CLS] seen: the sequence length of each image times the images."""
        _, _, height, width = batch["pixel_values"].shape
        patch = self.model_config["patch_size"]
        return batch["pixel_values"].shape[0] * (1 + (height // patch) * (width // patch))

    def predict(self, model, limit=None) -> tuple[list[int], list[int]]:
        """(predicted, true) class indices of the first ``limit`` validation images."""
        count = len(self.validation) if limit is None else min(limit, len(self.validation))
        predictions = []
        with Evaluating(model):
            device = device_of(model)
            for start in range(0, count, EVAL_BATCH * 4):
                images = self.validation.images[start : min(start + EVAL_BATCH * 4, count)]
                logits = model(self._pixels(images).to(device)).logits
                predictions += logits.argmax(-1).tolist()
        return predictions, self.validation.labels[:count]

    def evaluate(self, model, limit=None):
        predictions, references = self.predict(model, limit)
        return {"accuracy": metrics.accuracy(predictions, references),
                "macro_f1": metrics.macro_f1(predictions, references)}  # fmt: skip

    def confusion(self, model) -> Tensor:
        """The validation set's confusion matrix ``(classes, classes)`` (row: true class)."""
        predictions, references = self.predict(model)
        classes = range(len(self.train.classes))
        return torch.tensor(metrics.confusion_matrix(predictions, references, classes))


def read_data(data, validation, seed: int, image_size: int | None):
    """(train, validation, where the data came from) for ``data``: None (the first installed
    built-in set), a built-in name, a class folder or a CSV."""
    if data is None or (str(data) in reading.BUILTIN_NAMES and not Path(str(data)).exists()):
        if validation is not None:
            raise TaskError("validation: needs data too (the built-in sets have their own)")
        name, train, held = reading.builtin(None if data is None else str(data), seed)
        if image_size and image_size != train.images.shape[-1]:
            raise TaskError(f"overrides: image_size: the built-in {name} images are "
                            f"{train.images.shape[-1]} pixels")  # fmt: skip
        source = {"name": name}
        if data is None and name != reading.BUILTIN_NAMES[0]:  # said in the run's summary
            source["instead_of"] = reading.BUILTIN_NAMES[0]
        return train, held, {"builtin": source}
    size = image_size or USER_IMAGE_SIZE
    images = reading.read_images(data, size)
    if validation is None:
        train, held = reading.split(images, 0.1, seed)
    else:
        train, held = images, reading.read_images(validation, size)
        unseen = sorted(set(held.classes) - set(train.classes))
        if unseen:
            raise TaskError(f"validation: classes {unseen} are not in the training data")
        index = {name: i for i, name in enumerate(train.classes)}
        held = reading.ImageSet(held.images, [index[held.classes[i]] for i in held.labels],
                                train.classes, held.sources)  # fmt: skip
        if held.images.shape[1] != train.images.shape[1]:
            raise TaskError("validation: grey and colour images mixed with the training data")
    source = {"data": [str(data)], "validation": None if validation is None else str(validation)}
    return train, held, source


def build_images_task(*, data=None, validation=None, size="tiny", overrides=None, seed=0,
                      **text_settings) -> ImagesTask:  # fmt: skip
    """``build_task("images", ...)``: the settings of text tasks (a tokenizer, a maximum
    length, a pretrained encoder) are refused by name."""
    given = [name for name, value in text_settings.items() if value is not None]
    if given:
        raise TaskError(f"{given[0]}: not a setting of the images task")
    overrides = dict(overrides or {})
    fields, options = model_settings("images", size, overrides)
    if isinstance(data, (list, tuple)):
        if len(data) != 1:
            raise TaskError(f"data: images reads one folder or CSV, got {len(data)}")
        data = data[0]
    train, held, source = read_data(
        data,
        validation,
        seed,
        (int(overrides["image_size"]) if "image_size" in overrides else None),
    )
    info = {**source, "size": size, "overrides": overrides, "seed": seed}
    if "builtin" in source:  # the smaller sets need fewer steps (flags still decide)
        info["training"] = dict(BUILTIN_RUNS[source["builtin"]["name"]])
    return ImagesTask(train, held, None, max_length=None, model_config=fields, options=options,
                      info=info)  # fmt: skip


def rebuild_images_task(info: dict, folder, data=None) -> ImagesTask:
    """The task of a ``task.json``: its data read again (``data``: score these images instead,
    every one of them in validation, their class names mapped onto the model's)."""
    config = info["model_config"]
    labels = info.get("labels")
    if data is not None:
        paths = [data] if isinstance(data, (str, Path)) else list(data)
        held = reading.read_images(paths[0], config["image_size"])
        held = reading.with_channels(held, config["num_channels"])
        unknown = sorted(set(held.classes) - set(labels or []))
        if unknown:
            raise TaskError(f"data: classes {unknown} are not ones the model knows: {labels}")
        index = {name: i for i, name in enumerate(labels)}
        held = reading.ImageSet(held.images, [index[held.classes[i]] for i in held.labels],
                                labels, held.sources)  # fmt: skip
        train = held
    elif info.get("data"):
        train, held, _ = read_data(info["data"][0], info.get("validation"), info.get("seed", 0),
                                   config["image_size"])  # fmt: skip
    elif "builtin" in info:
        train, held, _ = read_data(info["builtin"]["name"], None, info.get("seed", 0), None)
    else:
        raise TaskError(f"{folder}: the task was trained on images in memory; pass data=")
    return ImagesTask(
        train, held, None, max_length=None, model_config=config,
        options=info.get("options") or {}, info={k: info[k] for k in KEPT_INFO if k in info},
    )  # fmt: skip


KEPT_INFO = ("data", "validation", "builtin", "size", "overrides", "seed", "labels", "training")
