"""``atenea train`` / ``atenea evaluate`` end to end on tiny data: every task through the command
line, the folder it writes, evaluation of new files, --init, --resume and the errors."""

import csv
import json
import random
import re
import time

import pytest
import torch

import atenea
from atenea.cli.main import main
from atenea.models import EncoderDecoderModel, EncoderForSequenceClassification
from atenea.training.metrics_log import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"

SMALL = ["--set", "dim=32", "--set", "num_layers=1", "--set", "num_heads=2",
         "--set", "ffn_hidden=64"]  # fmt: skip
QUICK = ["--eval-every", "0", "--save-every", "10", "--quiet", "--seed", "0"]
WORDS = "the a cat dog sat ran on under mat table while because red blue small large".split()


def run(*args) -> int:
    return main([str(a) for a in args])


def main_metric(folder) -> tuple[float, float]:
    """The main metric at step 0 (untrained) and at the end."""
    info = json.loads((folder / "task.json").read_text())
    evals = [r["eval"][info["main_metric"]] for r in read_metrics(folder) if "eval" in r]
    return evals[0], evals[-1]


def improved(folder) -> bool:
    info = json.loads((folder / "task.json").read_text())
    first, last = main_metric(folder)
    return last > first if info["higher_is_better"] else last < first


def reviews(count, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["good", "bad"])
        words = [rng.choice(WORDS) for _ in range(6)]
        words.insert(rng.randint(0, 6), "great" if label == "good" else "awful")
        rows.append({"review": " ".join(words), "stars": label})
    return rows


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_csv(folder / "reviews.csv", reviews(240, 0))
    write_csv(folder / "more.csv", reviews(60, 1))
    with (folder / "reviews.jsonl").open("w") as handle:
        for row in reviews(240, 2):
            handle.write(json.dumps({"text": row["review"], "label": row["stars"]}) + "\n")
    rng = random.Random(3)
    days = [(rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2030)) for _ in range(12)]
    months = "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    months = (months + "diciembre").split()
    lines = [f"{d} de {months[m - 1]} de {y}\t{y}-{m:02d}-{d:02d}" for d, m, y in days]
    (folder / "dates.tsv").write_text("source\ttarget\n" + "\n".join(lines) + "\n")
    texts = folder / "texts"
    texts.mkdir()
    for i in range(12):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(8)) + "." for _ in range(30)]
        (texts / f"part{i}.txt").write_text("\n".join(sentences))
    return folder


@pytest.fixture(scope="module")
def classify_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "classify"
    code = run("train", "classify", "--data", data / "reviews.csv", "--text-column", "review",
               "--label-column", "stars", "--steps", 30, "--batch-size", 16, "--lr", 3e-3,
               "--out", out, *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    return out


def test_classify_csv(classify_run):
    model, tokenizer = atenea.load_pretrained(classify_run)
    assert isinstance(model, EncoderForSequenceClassification) and tokenizer is not None
    info = json.loads((classify_run / "task.json").read_text())
    assert info["task"] == "classify" and info["labels"] == ["bad", "good"]
    assert info["columns"]["text"] == "review" and info["training"]["steps"] == 30
    assert (classify_run / "curves.png").read_bytes()[:8] == PNG  # drawn by the command
    assert improved(classify_run), main_metric(classify_run)


def test_classify_jsonl(data, tmp_path):
    out = tmp_path / "run"
    code = run("train", "classify", "--data", data / "reviews.jsonl", "--steps", 30,
               "--batch-size", 16, "--lr", 3e-3, "--out", out, *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    assert improved(out), main_metric(out)


def test_the_same_command_trains_the_same_model(data, tmp_path):
    """--seed decides the initial weights too, not the process's random state."""
    for out in ("first", "second"):
        torch.manual_seed(len(out))  # whatever state the process is in
        assert run("train", "classify", "--data", data / "reviews.jsonl", "--steps", 2,
                   "--batch-size", 16, "--out", tmp_path / out, *SMALL, *QUICK) == 0  # fmt: skip
    files = [(tmp_path / out / "model.safetensors").read_bytes() for out in ("first", "second")]
    assert files[0] == files[1]  # the very same file
    first, second = (atenea.load_pretrained(tmp_path / out)[0] for out in ("first", "second"))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_evaluate_a_new_file(classify_run, data, tmp_path, capsys):
    before = sorted(p.name for p in classify_run.iterdir())
    assert run("evaluate", "--model", classify_run, "--data", data / "more.csv") == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()  # the metrics come first
    values = {line.split()[0]: float(line.split()[1]) for line in lines}
    assert set(values) == {"accuracy", "macro_f1"} and 0 <= values["accuracy"] <= 1
    assert "(main)" in next(line for line in lines if line.startswith("accuracy"))
    assert sorted(p.name for p in classify_run.iterdir()) == before  # writes nothing
    assert run("evaluate", "--model", classify_run, "--data", data / "more.csv",
               "--limit", 10, "--out", tmp_path) == 0  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["limit"] == 10 and "accuracy" in saved


def test_resume_takes_the_saved_settings(classify_run, capsys):
    # The run is complete: resuming it reads task.json and the tokenizer from the checkpoint,
    # takes steps / lr / batch size from the saved run, and only evaluates again.
    assert run("train", "classify", "--out", classify_run, "--resume", "--quiet") == 0
    code = run("train", "classify", "--out", classify_run, "--resume", "--lr", 0.5, "--quiet")
    assert code == 1  # the loop refuses other settings: a run-time TrainingError
    message = capsys.readouterr().err.strip()
    assert message.startswith("atenea train: cannot resume") and "\n" not in message


def test_translate_tsv_then_generate(data, tmp_path, capsys):
    out = tmp_path / "dates"
    # Memorize 12 pairs (validation = the same file): enough to see every piece working.
    code = run("train", "translate", "--data", data / "dates.tsv", "--validation",
               data / "dates.tsv", "--tokenizer", "chars", "--steps", 120, "--batch-size", 12,
               "--lr", 5e-3, "--warmup", 5, "--set", "dim=64", "--set", "num_layers=1",
               "--set", "label_smoothing=0", "--out", out, *QUICK)  # fmt: skip
    assert code == 0
    model, _ = atenea.load_pretrained(out)
    assert isinstance(model, EncoderDecoderModel)
    first, last = main_metric(out)
    assert first == 0 and last > 0.5, (first, last)
    pictures = sorted((out / "alignments").iterdir())
    assert [p.name for p in pictures] == [f"alignment-{i}.png" for i in range(4)]
    assert all(p.read_bytes()[:8] == PNG and p.stat().st_size > 1000 for p in pictures)
    capsys.readouterr()
    source, target = (data / "dates.tsv").read_text().splitlines()[1].split("\t")
    assert run("generate", "--model", out, "--prompt", source, "--max-new-tokens", 20) == 0
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", printed), printed


def test_lm_on_a_folder(data, tmp_path, capsys):
    out = tmp_path / "lm"
    code = run("train", "lm", "--data", data / "texts", "--steps", 30, "--batch-size", 8,
               "--lr", 3e-3, "--max-length", 32, "--vocab-size", 300, "--out", out,
               *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    assert improved(out), main_metric(out)
    info = json.loads((out / "task.json").read_text())
    assert info["task"] == "lm" and info["data"] == [str(data / "texts")]
    assert len(list((out / "checkpoints").iterdir())) == 2  # steps 20 and 30 kept
    assert run("generate", "--model", out, "--prompt", "the cat", "--max-new-tokens", 5) == 0


@pytest.fixture(scope="module")
def mlm_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlm"
    code = run("train", "mlm", "--data", data / "texts", "--steps", 30, "--batch-size", 8,
               "--lr", 3e-3, "--max-length", 32, "--vocab-size", 200, "--out", out,
               *SMALL, *QUICK)  # fmt: skip
    assert code == 0
    return out


def test_mlm_on_a_folder(mlm_run):
    assert improved(mlm_run), main_metric(mlm_run)
    model, _ = atenea.load_pretrained(mlm_run)
    assert type(model).__name__ == "EncoderForMaskedLM"


def test_init_from_an_mlm_checkpoint(mlm_run, data, tmp_path):
    out = tmp_path / "classify"
    code = run("train", "classify", "--data", data / "reviews.csv", "--text-column", "review",
               "--label-column", "stars", "--init", mlm_run, "--steps", 10, "--batch-size", 16,
               "--out", out, *QUICK)  # fmt: skip
    assert code == 0
    # The mlm's tokenizer and encoder shape, not new ones.
    assert (out / "tokenizer.json").read_text() == (mlm_run / "tokenizer.json").read_text()
    model, _ = atenea.load_pretrained(out)
    pretrained, _ = atenea.load_pretrained(mlm_run)
    assert model.config.dim == pretrained.config.dim == 32
    info = json.loads((out / "task.json").read_text())
    assert info["init"] == str(mlm_run) and info["tokenizer"]["kind"] == "pretrained"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["classify", "--data", "{data}/missing.csv"], "missing.csv"),
        (["classify", "--data", "{data}/reviews.csv"], "review"),  # no 'text' column
        (["lm", "--data", "{data}/texts", "--set", "num_layers"], "--set"),
        (["lm", "--data", "{data}/texts", "--set", "layers=2"], "layers"),
        (["lm", "--resume"], "--resume"),
        (["lm", "--data", "{data}/texts", "--steps", "0"], "--steps"),
        # A check of the training loop, named by the flag that set it.
        (["lm", "--data", "{data}/texts", "--batch-size", "100000"], "--batch-size"),
        # Checks of the task library (which names its arguments), named by their flags.
        (["lm", "--data", "{data}/texts", "--max-length", "1"], "--max-length: "),
        (["lm", "--data", "{data}/texts", "--init", "minilm"], "--init: "),
        (["lm", "--validation", "{data}/texts"], "--validation: "),
        (["classify", "--data", "{data}/reviews.csv", "{data}/more.csv"], "--data: "),
    ],
)
def test_errors_are_one_line(data, tmp_path, capsys, args, expected):
    args = [a.format(data=data) for a in args]
    assert run("train", *args, "--out", tmp_path / "out", "--quiet") == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("atenea train: ") and "\n" not in message, message
    assert expected in message and "TrainConfig" not in message


def test_evaluate_errors(classify_run, data, tmp_path, capsys):
    assert run("evaluate", "--model", tmp_path / "nothing") == 2
    assert run("evaluate", "--model", tmp_path) == 2  # a folder without task.json
    # The task library's check, named by the flag that set it.
    assert run("evaluate", "--model", classify_run, "--data", data / "more.csv",
               data / "reviews.csv") == 2  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("atenea evaluate: ") for line in lines)
    assert "task.json" in lines[1]
    assert lines[2].startswith("atenea evaluate: --data: classify reads one file, got 2")


def test_a_finished_run_is_not_overwritten(classify_run, data, capsys):
    code = run("train", "classify", "--data", data / "reviews.csv", "--text-column", "review",
               "--label-column", "stars", "--out", classify_run, "--quiet")  # fmt: skip
    assert code == 2 and "--resume" in capsys.readouterr().err


@pytest.mark.slow
def test_default_translate_reaches_99_percent(tmp_path, capsys):
    """The issue's target: ``atenea train translate`` with no flags, >= 99% exact match on
    unseen dates in under 5 minutes on 2 CPU cores (the wall time is printed)."""
    torch.set_num_threads(2)
    started = time.perf_counter()
    assert run("train", "translate", "--out", tmp_path / "dates", "--quiet") == 0
    seconds = time.perf_counter() - started
    _, last = main_metric(tmp_path / "dates")
    with capsys.disabled():
        print(f"\natenea train translate: exact match {last:.4f} in {seconds:.0f} s")
    assert last >= 0.99


POSITIVE = ("good great wonderful excellent", "superb fantastic delightful brilliant lovely")
NEGATIVE = ("bad awful terrible boring", "dreadful horrible dull miserable disappointing")


def opinions(count, column, seed):
    """Short reviews; ``column`` 0 uses the training adjectives, 1 others never seen in them."""
    rng = random.Random(seed)
    nouns = "movie plot acting music ending story film cast".split()
    templates = ["The {n} was {a}.", "I thought the {n} was {a}.", "What a {a} {n}!",
                 "Honestly, the {n} felt {a}."]  # fmt: skip
    rows = []
    for i in range(count):
        label, words = [("positive", POSITIVE), ("negative", NEGATIVE)][i % 2]
        adjective = rng.choice(words[column].split())
        text = rng.choice(templates).format(n=rng.choice(nouns), a=adjective)
        rows.append({"text": text, "label": label})
    return rows


@pytest.mark.slow
def test_minilm_start_beats_scratch_with_few_labels(tmp_path):
    """32 labelled reviews; validation says the same with adjectives the training never saw.
    A scratch model cannot know that "superb" is positive; MiniLM's encoder does. (On the
    built-in sentiment data, whose labels turn on negation and contrast, 32 examples teach
    neither start anything: both stay near 55%.)"""
    write_csv(tmp_path / "train.csv", opinions(32, 0, seed=0))
    write_csv(tmp_path / "val.csv", opinions(200, 1, seed=1))
    common = ["--data", tmp_path / "train.csv", "--validation", tmp_path / "val.csv",
              "--steps", 30, "--batch-size", 16, "--warmup", 3, *QUICK]  # fmt: skip
    assert run("train", "classify", *common, "--init", "minilm", "--lr", 1e-4,
               "--out", tmp_path / "pre") == 0  # fmt: skip
    assert run("train", "classify", *common, "--lr", 1e-3, "--out", tmp_path / "scratch") == 0
    pretrained, scratch = main_metric(tmp_path / "pre")[1], main_metric(tmp_path / "scratch")[1]
    assert pretrained > 0.9 and scratch < 0.75, (pretrained, scratch)


@pytest.mark.slow
def test_lm_under_torchrun(data, tmp_path):
    """Two ranks on the CPU (gloo): the command runs unchanged, rank 0 writes the folder."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={port}", "-m", "atenea", "train", "lm", "--data",
               str(data / "texts"), "--steps", "6", "--batch-size", "4", "--max-length", "32",
               "--vocab-size", "300", "--out", str(out), *SMALL, *QUICK]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    model, _ = atenea.load_pretrained(out)
    assert type(model).__name__ == "DecoderModel"
    assert improved(out), main_metric(out)


def digit_folder(root, per_class=10):
    """Real handwritten digits (scikit-learn's 8x8) of three classes as PNG files."""
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits come with scikit-learn")
    image_module = pytest.importorskip("PIL.Image", reason="writing PNGs needs Pillow")
    bunch = datasets.load_digits()
    for digit in (0, 1, 7):
        (root / f"digit-{digit}").mkdir(parents=True)
        chosen = [i for i, t in enumerate(bunch.target) if t == digit][:per_class]
        for i in chosen:
            pixels = (bunch.images[i] * 255 / 16).round().astype("uint8")
            image_module.fromarray(pixels).save(root / f"digit-{digit}" / f"{i}.png")
    return root


def test_images_end_to_end_on_a_small_slice(tmp_path, capsys):
    data = digit_folder(tmp_path / "digits")
    out = tmp_path / "run"
    tiny = ["--set", "dim=16", "--set", "num_layers=1", "--set", "num_heads=2",
            "--set", "ffn_hidden=32", "--set", "image_size=8"]  # fmt: skip
    assert run("train", "images", "--data", data, "--steps", 6, "--batch-size", 8, "--out", out,
               *tiny, "--eval-every", 0, "--save-every", 3, "--seed", 0) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"atenea explain --image {data}" in printed
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "task.json",
                 "curves.png", "confusion.png", "metrics.jsonl"):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vit" and config["num_channels"] == 1
    assert config["id2label"] == {"0": "digit-0", "1": "digit-1", "2": "digit-7"}
    assert config["patch_size"] == 2 and config["image_size"] == 8
    model, _ = atenea.load_pretrained(out)
    assert model.labels == ["digit-0", "digit-1", "digit-7"]
    # The task is rebuilt from task.json (no tokenizer): resuming the finished run, then the
    # score of the folder itself (every image).
    assert run("train", "images", "--out", out, "--resume", "--quiet") == 0
    assert [r["step"] for r in read_metrics(out) if "loss" in r][-1] == 6
    assert run("evaluate", "--model", out, "--data", data) == 0
    assert "accuracy" in capsys.readouterr().out
    # predict: each file's class and probabilities, read as the training files were
    from atenea.training.datasets.images import read_image_folder
    from atenea.training.predict import Predictor

    seen = read_image_folder(data, 8)
    files = [str(source) for source in seen.sources[:3]]
    got = Predictor.from_folder(out).predict(files)
    c = model.config
    pixels = (seen.images[:3].float() / 255 - c.image_mean[0]) / c.image_std[0]
    with torch.no_grad():
        expected = torch.softmax(model.eval()(pixels).logits, -1)
    for result, row in zip(got, expected):
        assert result["prediction"] == model.labels[int(row.argmax())]
        assert list(result["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-6)
    assert run("predict", "--model", out, *files) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1].split()[0] for line in lines] == [r["prediction"] for r in got]


def test_images_bad_data_is_one_line(tmp_path, capsys):
    data = digit_folder(tmp_path / "digits", per_class=3)
    (data / "digit-9").mkdir()
    assert run("train", "images", "--data", data, "--out", tmp_path / "o", "--quiet") == 2
    error = capsys.readouterr().err
    assert error.startswith("atenea train: ") and "digit-9: empty class folder" in error
    assert error.count("\n") == 1
    assert (
        run("train", "images", "--data", data, "--tokenizer", "bpe", "--out", tmp_path / "p") == 2
    )
    assert "--tokenizer: not a setting of the images task" in capsys.readouterr().err
