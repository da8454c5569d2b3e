"""What a task is built from: its model size, the options it takes, the settings of a run with
no flags, and the checking of ``overrides``. No torch here beyond the model configs' fields.

Size presets (``size``; any config field can be changed through ``overrides``):

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

For translate, ``overrides={"num_layers": N}`` sets both stacks. tiny trains in minutes on two
CPU cores; dropout is off there because a tiny model trained briefly underfits, and dropout
would only slow it down.
"""

from __future__ import annotations

import dataclasses

from atenea.models import DecoderConfig, EncoderConfig, EncoderDecoderConfig

TASKS = ("classify", "translate", "lm", "mlm")
SIZES = ("tiny", "small", "base")

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

# The model config and size table of each task.
MODEL_FAMILIES = {
    "classify": (EncoderConfig, ENCODER_SIZES),
    "mlm": (EncoderConfig, ENCODER_SIZES),
    "lm": (DecoderConfig, DECODER_SIZES),
    "translate": (EncoderDecoderConfig, SEQ2SEQ_SIZES),
}

# Options of a task that are not model config fields (``overrides`` reach them too).
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


def model_settings(name: str, size: str, overrides: dict) -> tuple[dict, dict]:
    """(config fields, task options) for task ``name`` at ``size`` with ``overrides``
    applied."""
    if size not in SIZES:
        raise TaskError(f"size: expected one of {', '.join(SIZES)}, got {size!r}")
    config_class, sizes = MODEL_FAMILIES[name]
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
            options[key] = _typed(key, value, options[key])
        elif key == "num_layers" and name == "translate":  # both stacks at once
            layers = _typed(key, value, 0)
            fields.update(num_encoder_layers=layers, num_decoder_layers=layers)
        elif key in settable:
            fields[key] = _typed(key, value, defaults[key])
        else:
            known = ", ".join(sorted(settable | set(options)))
            raise TaskError(
                f"overrides: {key} is not a setting of the {name} model; known: {known}"
            )
    return fields, options
