"""Building a task from data and settings (``build_task``), and rebuilding a trained one from
its ``task.json`` and saved tokenizer (``from_description``: nothing is retrained)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from atenea.models import Tokenizer
from atenea.models.pretrained import read_json_object
from atenea.training import data as reading
from atenea.training.tasks.base import Task
from atenea.training.tasks.classify import ClassifyTask
from atenea.training.tasks.images import ImagesTask, build_images_task, rebuild_images_task
from atenea.training.tasks.lm import LanguageModelTask
from atenea.training.tasks.lm_carry import CarriedMemoryLanguageModelTask
from atenea.training.tasks.lm_memory import SegmentedLanguageModelTask
from atenea.training.tasks.mlm import MaskedLanguageModelTask
from atenea.training.tasks.settings import (
    BUILTIN,
    CORPORA,
    DEFAULTS,
    TASKS,
    TaskError,
    model_settings,
)
from atenea.training.tasks.translate import TranslateTask

TASK_CLASSES: dict[str, type[Task]] = {
    "classify": ClassifyTask,
    "translate": TranslateTask,
    "lm": LanguageModelTask,
    "mlm": MaskedLanguageModelTask,
    "images": ImagesTask,
}
# What from_description takes back from task.json into the rebuilt task's info.
_KEPT_INFO = ("data", "validation", "builtin", "size", "overrides", "seed", "columns",
              "tokenizer", "init", "labels", "training")  # fmt: skip


def task_class(name: str, options: dict) -> type[Task]:
    """The class of task ``name``: lm with a ``segment`` runs segment by segment with memory
    (``carry_memory``: carried from step to step)."""
    segmented = name == "lm" and int(options.get("segment") or 0) > 0
    if name == "lm" and options.get("carry_memory") and not segmented:
        raise TaskError("carry_memory: needs segment=L (--segment L) to carry a memory across")
    if segmented and options.get("join_documents"):  # the memory's streams keep documents apart
        raise TaskError("join_documents: packs rows for the lm task without --segment; a "
                        "segment memory resets at every document")  # fmt: skip
    if segmented and options.get("carry_memory"):
        return CarriedMemoryLanguageModelTask
    if segmented:
        return SegmentedLanguageModelTask
    return TASK_CLASSES[name]


def _paths(data) -> list[str]:
    return [str(p) for p in ([data] if isinstance(data, (str, Path)) else data)]


def _read(name: str, data, validation, columns: dict, seed: int):
    """The Split of user files (``data``: a path or a list of paths), of a built-in corpus
    named by ``data`` (``CORPORA``), or of a Split given as is (anything with ``train`` and
    ``validation``)."""
    if hasattr(data, "train") and hasattr(data, "validation"):
        return data
    paths = _paths(data)
    corpus = _corpus(name, paths, validation)
    if corpus is not None:
        return corpus
    if name in ("classify", "translate") and len(paths) != 1:
        raise TaskError(f"data: {name} reads one file, got {len(paths)}: {' '.join(paths)}")
    if name == "classify":
        return reading.read_classify(paths[0], columns["text"], columns["label"],
                                     validation=validation, seed=seed)  # fmt: skip
    if name == "translate":
        return reading.read_translate(paths[0], columns["source"], columns["target"],
                                      validation=validation, seed=seed)  # fmt: skip
    return reading.read_texts(paths, validation=validation, seed=seed)


def _corpus(name: str, paths: list[str], validation=None):
    """The Split of a built-in corpus named as ``data`` (``bible-es-en``; ``bible-es-en:test``
    validates on its test books; ``django-es-en``, a test set), or None when ``paths`` names
    none (a file of that name wins). The arguments are checked before the corpus is read (it
    may need packages this machine lacks)."""
    corpus, _, part = paths[0].partition(":") if len(paths) == 1 else ("", "", "")
    if corpus not in CORPORA or Path(paths[0]).exists():
        return None
    task, module_name = CORPORA[corpus]
    if name != task:
        raise TaskError(f"data: {corpus} is a corpus of {task}, not of {name}")
    if part not in ("", "test"):
        raise TaskError(f"data: {paths[0]}: expected {corpus} or {corpus}:test")
    if validation is not None and str(validation) != paths[0]:
        raise TaskError(f"validation: {paths[0]} has its own validation books")
    module = importlib.import_module(f"atenea.training.datasets.{module_name}")
    return module.split(test=part == "test")


def _builtin(name: str, seed: int):
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
    from atenea.models import CheckpointError, EncoderModel, load_pretrained

    try:
        model, tokenizer = load_pretrained(init)
    except CheckpointError as error:
        raise TaskError(f"init: {error}") from None
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, EncoderModel):
        raise TaskError(f"init: {init} is not an encoder checkpoint ({type(model).__name__})")
    if tokenizer is None:
        raise TaskError(f"init: {init} has no tokenizer.json")
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
    arch: str = "transformer",
) -> Task:
    """A task on the user's data (``data``: a file, a list of files / folders / globs for
    lm and mlm, or a ``Split``) or, with ``data=None``, on the built-in data of
    docs/training.md. The tokenizer is trained on the training texts unless one is given
    (or ``init`` brings its own). ``overrides``: ``{"num_layers": "2", ...}`` (strings are
    converted to the field's type). ``init`` (classify only): an mlm checkpoint folder or
    ``"minilm"``: its encoder weights and tokenizer, a new head. ``arch`` (translate):
    ``"transformer"``, ``"rnnsearch"`` or ``"rnnencdec"``. ``data="bible-es-en"``: the built-in
    Spanish-English Bible (``training/datasets/bible.py``).

    Raises TaskError (or the data readers' DataError) whose message starts with the argument
    at fault."""
    if name not in TASKS:
        raise TaskError(f"name: expected a task, one of {', '.join(TASKS)}; got {name!r}")
    if name == "images":
        return build_images_task(
            data=data, validation=validation, size=size, overrides=overrides, seed=seed,
            max_length=max_length, tokenizer_kind=tokenizer_kind, vocab_size=vocab_size,
            init=init, tokenizer=tokenizer,
        )  # fmt: skip
    defaults, overrides = DEFAULTS[name], dict(overrides or {})
    explicit_length = max_length is not None
    max_length = max_length or defaults["max_length"]
    if max_length < 2:
        raise TaskError(f"max_length: expected an integer >= 2, got {max_length}")
    fields, options = model_settings(name, size, overrides, arch)
    columns = {"text": text_column, "label": label_column,
               "source": source_column, "target": target_column}  # fmt: skip
    if data is None:
        if validation is not None:
            raise TaskError("validation: needs data too (the built-in data has its own)")
        split = _builtin(name, seed)
        source = {"builtin": BUILTIN[name]}
        kind = tokenizer_kind or BUILTIN[name].get("tokenizer") or defaults["tokenizer"]
    else:
        split = _read(name, data, validation, columns, seed)
        is_split = hasattr(data, "train")
        source = {"data": None if is_split else _paths(data),
                  "validation": None if validation is None else str(validation)}  # fmt: skip
        kind = tokenizer_kind or defaults["tokenizer"]
        if not split.train:
            raise TaskError(
                "data: no training examples in it (django-es-en is a test set: evaluate a "
                "trained model on it with atenea evaluate --model RUN --data django-es-en)"
            )
    init_state = None
    if init is not None:
        if name != "classify":
            raise TaskError(f"init: only classify starts from a pretrained encoder, not {name}")
        pretrained, tokenizer, init_state = _pretrained_encoder(init)
        if max_length > pretrained["max_positions"]:  # the encoder has no positions beyond
            if explicit_length:
                raise TaskError(
                    f"max_length: {init} has positions for {pretrained['max_positions']} "
                    f"tokens, got {max_length}"
                )
            max_length = pretrained["max_positions"]
        fields = {**pretrained, **{k: v for k, v in fields.items() if k in overrides}}
        kind = "pretrained"
    if tokenizer is None:
        from atenea.training.tokenizers import train_tokenizer  # lazy: the tokenizers library

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
        # vocab_size: what the tokenizer learned; requested: --vocab-size (at most that many)
        "tokenizer": {"kind": kind, "vocab_size": tokenizer.vocab_size, "requested": vocab_size},
        "init": None if init is None else str(init),
    }
    task = task_class(name, options)(
        split.train, split.validation, tokenizer, max_length=max_length, model_config=fields,
        options=options, info=info,
    )  # fmt: skip
    task.init_state = init_state
    return task


def read_examples(info: dict, folder, data=None, columns: dict | None = None):
    """The ``Split`` of examples a described task (``task.json``'s ``info``) reads: the data it
    was trained on (the same validation split), or with ``data`` that file as the validation
    set (``columns``: the file's column names, default the ones the task was trained with)."""
    name = info["task"]
    columns = {**(info.get("columns") or {}), **(columns or {})}
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
    return split


def read_description(folder) -> dict:
    """The ``task.json`` of a folder written by training (a trained model or a checkpoint)."""
    path = Path(folder) / "task.json"
    info = read_json_object(path, "missing; not a folder written by atenea train")
    if "task" not in info:
        raise TaskError(f"{path}: not a task description (no 'task')")
    return info


def from_description(info: dict, folder, data=None) -> Task:
    """Rebuild the task of ``task.json`` (``info``) with the tokenizer saved in ``folder``.
    ``data=None``: the data it was trained on (for resuming); a file: score that file (every
    example of it lands in the validation set, for ``atenea evaluate``)."""
    name = info.get("task")
    if name not in TASKS:
        raise TaskError(f"{folder}/task.json: unknown task {name!r}")
    folder = Path(folder)
    if name == "images":  # no tokenizer: the images are read again
        return rebuild_images_task(info, folder, data)
    try:
        tokenizer = Tokenizer.from_folder(folder)
    except (FileNotFoundError, ValueError) as error:
        raise TaskError(str(error)) from None
    split = read_examples(info, folder, data)
    return task_class(name, info.get("options") or {})(
        split.train, split.validation, tokenizer, max_length=info["max_length"],
        model_config=info["model_config"], options=info.get("options") or {},
        info={k: info[k] for k in _KEPT_INFO if k in info},
    )  # fmt: skip
