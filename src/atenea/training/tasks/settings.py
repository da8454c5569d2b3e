"""What a task is built from: its model size, the options it takes, the settings of a run with
no flags, and the checking of ``overrides``. Plain data and checks: nothing here builds a model.

Sizes (``size``): the shape of a task's model (width, depth, heads, feed-forward) is that of a
model preset of its family in ``atenea.models``, so a size word names the same model here as
there; where a run needs another shape, the change is written beside the preset, with why.
Any config field can still be changed through ``overrides``.

=========  =====  ==========================================  =====  =============  =====  ====
task       size   shape                                       dim    layers         heads  ffn
=========  =====  ==========================================  =====  =============  =====  ====
classify,  tiny   bert-tiny                                   128    2              2      512
mlm        small  bert-base, a third as wide and deep         256    4              4      1024
           base   bert-base                                   768    12             12     3072
lm         tiny   gpt2-tiny, twice as wide                    128    2              4      512
           small  gpt2-small, half as wide and deep           384    6              6      1536
           base   gpt2-small (GPT-2's base size)              768    12             12     3072
translate  tiny   transformer-tiny, 2x as wide, ffn 4x        128    2 enc + 2 dec  4      512
           small  transformer-base, half as wide and deep     256    3 enc + 3 dec  4      1024
           base   transformer-base                            512    6 enc + 6 dec  8      2048
=========  =====  ==========================================  =====  =============  =====  ====

translate's recurrent architectures (``arch="rnnsearch" | "rnnencdec"``, ``models/rnn.py``):

=========  =====  ==========================================  =========  ======  =========
task       size   shape                                       embedding  hidden  alignment
=========  =====  ==========================================  =========  ======  =========
translate  tiny   rnnsearch-tiny                              64         96      96
(rnn)      small  rnnsearch-50, about 40% as wide             256        384     384
           base   rnnsearch-50 (the paper's RNNsearch-50)     620        1000    1000
=========  =====  ==========================================  =========  ======  =========

For translate, ``overrides={"num_layers": N}`` sets both stacks. tiny trains in minutes on two
CPU cores; dropout is off there (0.1 at the other sizes) because a tiny model trained briefly
underfits, and dropout would only slow it down.
"""

from __future__ import annotations

import dataclasses

from atenea.models import (
    DecoderConfig,
    EncoderConfig,
    EncoderDecoderConfig,
    RNNConfig,
    ViTConfig,
)

TASKS = ("classify", "translate", "lm", "mlm", "images")
SIZES = ("tiny", "small", "base")

# The config fields a size decides: the shape of the model.
SHAPE_FIELDS = ("dim", "num_layers", "num_encoder_layers", "num_decoder_layers", "num_heads",
                "num_kv_heads", "ffn_hidden", "embedding_dim", "hidden_dim", "alignment_dim",
                "maxout_dim")  # fmt: skip
# Per model family and size: (the preset whose shape it takes, changes to that shape).
SIZE_PRESETS = {
    EncoderConfig: {
        "tiny": ("bert-tiny", {}),
        "small": ("bert-base", dict(dim=256, num_layers=4, num_heads=4, ffn_hidden=1024)),
        "base": ("bert-base", {}),
    },
    DecoderConfig: {
        # 64 wide (gpt2-tiny), the built-in lm run ends at perplexity 60; 128 wide, at 36.
        "tiny": ("gpt2-tiny", dict(dim=128, ffn_hidden=512)),
        "small": ("gpt2-small", dict(dim=384, num_layers=6, num_heads=6, ffn_hidden=1536)),
        "base": ("gpt2-small", {}),
    },
    EncoderDecoderConfig: {
        # 64 wide (transformer-tiny), the built-in dates end at 0.996 exact match, learning
        # slower (0.56 at step 400); 128 wide, at 1.0 (0.73 at step 400).
        "tiny": ("transformer-tiny", dict(dim=128, ffn_hidden=512)),
        "small": ("transformer-base", dict(dim=256, num_encoder_layers=3, num_decoder_layers=3,
                                           num_heads=4, ffn_hidden=1024)),
        "base": ("transformer-base", {}),
    },
    RNNConfig: {  # translate --arch rnnsearch | rnnencdec
        "tiny": ("rnnsearch-tiny", {}),
        "small": ("rnnsearch-50", dict(embedding_dim=256, hidden_dim=384, alignment_dim=384,
                                       maxout_dim=256)),
        "base": ("rnnsearch-50", {}),
    },
    ViTConfig: {
        "tiny": ("vit-tiny", {}),
        # DeiT-tiny's shape (192 wide, 3 heads) at half its depth.
        "small": ("vit-s-16", dict(dim=192, num_layers=6, num_heads=3, ffn_hidden=768)),
        "base": ("vit-b-16", {}),
    },
}  # fmt: skip
# translate's architectures: the Transformer, RNNsearch, the RNN encoder-decoder (models/rnn.py).
ARCHS = ("transformer", "rnnsearch", "rnnencdec")

# The model config of each task.
MODEL_CONFIGS = {
    "classify": EncoderConfig,
    "mlm": EncoderConfig,
    "lm": DecoderConfig,
    "translate": EncoderDecoderConfig,
    "images": ViTConfig,
}

# Options of a task that are not model config fields (``overrides`` reach them too).
TASK_OPTIONS = {
    "classify": {"pooling": "mean"},
    "translate": {"label_smoothing": 0.1},
    # segment > 0: run the text in segments of that many tokens with a segment memory of
    # memory_len (tasks/lm_memory.py); window: segments per training example (0: auto);
    # carry_memory: one segment a step, the memory carried across steps (tasks/lm_carry.py);
    # join_documents: one document mask over a whole row (GPT-2's packing: a token sees the
    # documents before it in its row, separated by </s>), instead of one per document.
    "lm": {"segment": 0, "window": 0, "carry_memory": False, "join_documents": False},
    "mlm": {"mask_probability": 0.15},
    "images": {"augment": "none"},
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
    "images": dict(steps=5500, batch_size=128, lr=2e-3, warmup=200),
}  # fmt: skip

# Built-in corpora named as data (``--data bible-es-en``): (task, module in training/datasets).
CORPORA = {"bible-es-en": ("translate", "bible"), "django-es-en": ("translate", "django_po")}

# Built-in data (docs/training.md): sizes of the default runs.
BUILTIN = {
    "classify": dict(name="sentiment", n_train=3000, n_validation=300),
    "translate": dict(name="dates", n_train=20000, n_validation=500, tokenizer="chars"),
    "lm": dict(name="stdlib", limit=120),
    "mlm": dict(name="stdlib", limit=120),
}


class TaskError(ValueError):
    """Bad task settings: an unknown task, size or override, data that does not fit. The
    message starts with the argument at fault (``size: ...``, ``overrides: ...``)."""


def parse_overrides(overrides: list[str] | None) -> dict[str, str]:
    """``["num_layers=2", "dropout=0.1"]`` -> ``{"num_layers": "2", ...}`` (typed later, by
    the task that knows the fields)."""
    parsed = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise TaskError(f"overrides: {item!r}: expected key=value, e.g. num_layers=2")
        parsed[key.strip()] = value.strip()
    return parsed


def _typed(key: str, text, default):
    """An override's value as the type of the field's default (strings are converted)."""
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
        raise TaskError(f"overrides: {key}={text}: expected {kind}") from None
    return text


def model_shape(config_class, size: str) -> dict:
    """The shape fields (``SHAPE_FIELDS``) of ``config_class``'s model at ``size``."""
    preset, changes = SIZE_PRESETS[config_class][size]
    config = config_class.from_name(preset)
    shape = {name: getattr(config, name) for name in SHAPE_FIELDS if hasattr(config, name)}
    return {**shape, **changes}


def model_settings(
    name: str, size: str, overrides: dict, arch: str = "transformer"
) -> tuple[dict, dict]:
    """(config fields, task options) for task ``name`` at ``size`` with ``overrides``
    applied. ``arch`` (translate only): ``ARCHS``; it is kept in the options."""
    if size not in SIZES:
        raise TaskError(f"size: expected one of {', '.join(SIZES)}, got {size!r}")
    if arch not in ARCHS:
        raise TaskError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    if arch != "transformer" and name != "translate":
        raise TaskError(f"arch: {arch} is an architecture of translate, not of {name}")
    config_class = MODEL_CONFIGS[name] if arch == "transformer" else RNNConfig
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    dropout = 0.0 if size == "tiny" else 0.1
    fields = {**model_shape(config_class, size), "dropout": dropout}
    if "attention_dropout" in defaults:
        fields["attention_dropout"] = dropout
    options = dict(TASK_OPTIONS[name])
    if name == "translate":
        options["arch"] = arch
    # The task decides vocabulary sizes, special ids and shared embeddings.
    settable = {k for k in defaults if not k.endswith(("vocab_size", "_token_id"))}
    settable -= {"share_embeddings", "id2label", "num_channels", "image_mean", "image_std"}
    for key, value in overrides.items():
        if key == "arch":
            raise TaskError("overrides: arch is not a model setting; choose it with arch= (--arch)")
        if key in options:
            options[key] = _typed(key, value, options[key])
        elif key == "num_layers" and name == "translate" and arch == "transformer":  # both stacks
            layers = _typed(key, value, 0)
            fields.update(num_encoder_layers=layers, num_decoder_layers=layers)
        elif key in settable:
            fields[key] = _typed(key, value, defaults[key])
        else:
            known = ", ".join(sorted(settable | set(options)))
            raise TaskError(
                f"overrides: {key} is not a setting of the {name} model; known: {known}"
            )
    _check_heads(fields, "head_dim" in settable)
    return fields, options


def _check_heads(fields: dict, has_head_dim: bool) -> None:
    """The heads must share the width (``dim = num_heads * head_dim``) unless the family has a
    ``head_dim`` setting that says otherwise: say so here, naming only settings that exist."""
    dim, heads = fields.get("dim"), fields.get("num_heads")
    if not dim or not heads or dim % heads == 0 or (has_head_dim and fields.get("head_dim")):
        return
    fix = f"set dim to a multiple of {heads} (e.g. dim={heads * max(dim // heads, 1)})"
    if has_head_dim:
        fix += f", or head_dim (e.g. head_dim={max(dim // heads, 1)})"
    raise TaskError(f"overrides: num_heads={heads} does not divide dim={dim}; {fix}")
