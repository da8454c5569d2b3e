"""The images task's data: the idx reader (Fashion-MNIST's format), a folder of class
subfolders, a CSV of path,label, and their one-line errors naming the file; the task's batches
(normalisation, augmentation), the confusion matrix, and an exact resume with augmentation on."""

import gzip
import struct

import numpy as np
import pytest
import torch

from atenea.retrieval.files import DataError
from atenea.training import tasks
from atenea.training.datasets import images as reading
from atenea.training.loop import TrainConfig, train
from atenea.training.sampling import initial_model

pytest.importorskip("PIL", reason="reading image files needs Pillow")
from PIL import Image  # noqa: E402

from tests.helpers import assert_same_weights


def write_idx(path, array: np.ndarray):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


def test_idx_reader_round_trip_and_errors(tmp_path):
    array = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)  # every axis different
    assert np.array_equal(reading.read_idx(write_idx(tmp_path / "a.gz", array)), array)
    labels = np.array([9, 0, 4], dtype=np.uint8)
    assert reading.read_idx(write_idx(tmp_path / "l.gz", labels)).tolist() == [9, 0, 4]
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match=r"short\.gz: truncated: header says \(3, 5, 7\)"):
        reading.read_idx(tmp_path / "short.gz")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"PK\x03\x04" + raw))
    with pytest.raises(DataError, match=r"bad\.gz: not an idx file"):
        reading.read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match=r"missing\.gz: no such file"):
        reading.read_idx(tmp_path / "missing.gz")


def test_fashion_mnist_reader_on_a_folder_in_its_layout(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 6), ("t10k", 4)):
        write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28))
        )
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    train, test = reading.fashion_mnist(tmp_path)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels == [0, 1, 2, 3] and train.classes[9] == "Ankle boot"
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        reading.fashion_mnist(tmp_path / "absent")


def make_folder(root, classes=("circle", "square"), per_class=4, size=12, mode="L"):
    """Class subfolders of small PNGs: a bright disc or a bright square on black."""
    rng = np.random.default_rng(1)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            y, x = np.mgrid[:size, :size]
            centre = rng.integers(4, size - 4, 2)
            if label == "circle":
                shape = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 < 9
            else:
                shape = (abs(y - centre[0]) < 3) & (abs(x - centre[1]) < 3)
            pixels = (shape * 255).astype(np.uint8)
            image = Image.fromarray(pixels).convert(mode)
            image.save(root / label / f"{i}.png")
    return root


def test_folder_layout_and_csv_read_the_same_images(tmp_path):
    root = make_folder(tmp_path / "shapes")
    folder = reading.read_images(root, 16)
    assert folder.images.shape == (8, 1, 16, 16) and folder.classes == ["circle", "square"]
    assert folder.labels == [0, 0, 0, 0, 1, 1, 1, 1]
    rows = ["path,label"] + [f"shapes/{s.split('/')[-2]}/{s.split('/')[-1]},{s.split('/')[-2]}"
                             for s in folder.sources]  # fmt: skip
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    listed = reading.read_images(tmp_path / "list.csv", 16)
    assert torch.equal(listed.images, folder.images) and listed.labels == folder.labels
    coloured = reading.read_images(make_folder(tmp_path / "rgb", mode="RGB"), 16)
    assert coloured.images.shape == (8, 3, 16, 16)


def test_bad_image_data_are_one_line_errors_naming_the_file(tmp_path):
    root = make_folder(tmp_path / "shapes")
    (root / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"square/broken\.png: not a readable image") as info:
        reading.read_images(root, 16)
    assert "\n" not in str(info.value)
    (root / "square" / "broken.png").unlink()
    (root / "triangle").mkdir()
    with pytest.raises(DataError, match=r"triangle: empty class folder"):
        reading.read_images(root, 16)
    (tmp_path / "list.csv").write_text("path,label\nshapes/circle/0.png,circle\nnope.png,square\n")
    with pytest.raises(DataError, match=r"list\.csv:3: .*nope\.png: no such image file"):
        reading.read_images(tmp_path / "list.csv", 16)
    with pytest.raises(DataError, match="expected one subfolder of images per class"):
        reading.read_images(root / "circle", 16)


def test_batches_are_normalised_and_augmentation_only_moves_pixels(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=6, size=16)
    task = tasks.build_task("images", data=root, overrides={"augment": "crop+flip"})
    assert task.model_config["image_size"] == 32 and task.model_config["patch_size"] == 4
    indices = list(range(task.num_train_examples()))
    first = task.batch(indices, torch.Generator().manual_seed(5))
    again = task.batch(indices, torch.Generator().manual_seed(5))
    assert torch.equal(first["pixel_values"], again["pixel_values"])  # drawn from the generator
    plain = task._pixels(task.train.images[indices])
    assert first["pixel_values"].shape == plain.shape == (len(indices), 1, 32, 32)
    # The shapes sit well inside the frame: a shift or a mirror keeps every bright pixel.
    bright = lambda pixels: (pixels > 0).sum((1, 2, 3))  # noqa: E731
    assert torch.equal(bright(first["pixel_values"]), bright(plain))
    assert not torch.equal(first["pixel_values"], plain)
    model = task.build_model()
    assert model.labels == ["circle", "square"]
    assert model(first["pixel_values"], labels=first["labels"]).loss.isfinite()
    # DDP gives each rank a half of the micro-batch and the same generator: each half must be
    # augmented as it is inside the whole batch (tests/cli/test_train_ddp.py runs two ranks).
    half = len(indices) // 2
    halves = [task.batch(part, torch.Generator().manual_seed(5))["pixel_values"]
              for part in (indices[:half], indices[half:])]  # fmt: skip
    assert torch.equal(torch.cat(halves), first["pixel_values"])


def test_a_tenth_is_held_out_and_every_class_keeps_an_image():
    labels = [0] * 9 + [1]  # 9 of one class, 1 of another: the lone image never leaves train
    whole = reading.ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), labels,
                             ["many", "one"])  # fmt: skip
    chosen = set()
    for seed in range(20):
        train, held = reading.split(whole, 0.1, seed)
        kept, out = train.images.flatten().tolist(), held.images.flatten().tolist()
        assert len(out) == 1 and 9 not in out and sorted(kept + out) == list(range(10))
        assert kept == sorted(kept) and held.labels == [labels[i] for i in out]
        chosen.update(out)
    assert len(chosen) > 3  # the seed chooses


def test_text_settings_are_refused_by_name(tmp_path):
    root = make_folder(tmp_path / "shapes")
    with pytest.raises(tasks.TaskError, match="tokenizer_kind: not a setting of the images"):
        tasks.build_task("images", data=root, tokenizer_kind="bpe")
    with pytest.raises(tasks.TaskError, match="augment: expected one of none, crop"):
        tasks.build_task("images", data=root, overrides={"augment": "rotate"})


@pytest.mark.slow  # three short training runs
def test_resume_with_augmentation_is_exact(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=8, size=16)
    overrides = {"augment": "crop+flip", "dim": "16", "num_layers": "1", "num_heads": "2",
                 "ffn_hidden": "32", "image_size": "16"}  # fmt: skip
    settings = dict(steps=4, batch_size=4, lr=3e-3, warmup=1, eval_every=2, save_every=2,
                    seed=2, progress=False)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = tasks.build_task("images", data=root, overrides=overrides)
        whole = initial_model(task, 2)
        train(task, whole, TrainConfig(output=tmp_path / "a", **settings))
        task = tasks.build_task("images", data=root, overrides=overrides)
        train(
            task, initial_model(task, 2), TrainConfig(output=tmp_path / "b", stop_at=2, **settings)
        )
        info = tasks.read_description(tmp_path / "b" / "checkpoints" / "checkpoint-000002")
        resumed_task = tasks.from_description(info, tmp_path / "b")
        resumed = resumed_task.build_model()
        train(resumed_task, resumed, TrainConfig(output=tmp_path / "b", **settings), resume=True)
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(whole, resumed)


def test_sixteen_bit_grey_is_scaled_not_clipped_and_a_csv_may_start_with_a_bom(tmp_path):
    """A 16-bit black-to-white ramp came out 99.6% white (Pillow's convert("L") clips past
    255); an Excel "CSV UTF-8" file's byte-order mark hid its header."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")  # mode I;16
    grey = reading.read_image(tmp_path / "ramp.png")
    assert grey.shape == (1, 8, 64) and grey[0, 0, 0] == 0 and grey[0, 0, -1] == 255
    np.testing.assert_allclose(grey[0, 0], np.rint(ramp[0] / 257.0), atol=1)
    make_folder(tmp_path / "shapes")
    rows = [f"shapes/{p.parent.name}/{p.name},{p.parent.name}"
            for p in sorted((tmp_path / "shapes").glob("*/*.png"))]  # fmt: skip
    (tmp_path / "bom.csv").write_text("\ufeffpath,label\n" + "\n".join(rows) + "\n")
    assert reading.read_images(tmp_path / "bom.csv", 16).classes == ["circle", "square"]
