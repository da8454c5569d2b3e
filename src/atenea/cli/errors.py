"""How the ``atenea`` commands end on bad input: one line on stderr naming the command, and an
exit code; never a traceback.

The library names its own arguments in its errors (``size: expected one of ...``,
``TrainConfig.batch_size: ...``, ``max_new_tokens: ...``); a command shows them as the flags
that set them, through one mapping per command family (``TRAINING_FLAGS`` for ``atenea train``
and ``atenea evaluate``, ``GENERATE_FLAGS``, ``EXPLAIN_FLAGS``) applied by ``fail``.
"""

from __future__ import annotations

import re
import sys

# Bad input of ours or of the library; anything else is a bug and keeps its traceback.
# (``CheckpointError``, ``DataError``, ``TaskError`` are ValueErrors.)
USER_ERRORS = (ValueError, TypeError, OSError)

# The arguments of ``atenea.training`` (``build_task``, ``from_description``, ``TrainConfig``,
# ``Task.evaluate``) -> the flags of ``atenea train`` / ``atenea evaluate`` that set them.
TRAINING_FLAGS = {
    "data": "--data",
    "validation": "--validation",
    "text_column": "--text-column",
    "label_column": "--label-column",
    "source_column": "--source-column",
    "target_column": "--target-column",
    "size": "--size",
    "overrides": "--set",
    "tokenizer_kind": "--tokenizer",
    "vocab_size": "--vocab-size",
    "max_length": "--max-length",
    "init": "--init",
    "seed": "--seed",
    "limit": "--limit",
    "TrainConfig.steps": "--steps",
    "TrainConfig.batch_size": "--batch-size",
    "TrainConfig.accumulation": "--accumulation",
    "TrainConfig.lr": "--lr",
    "TrainConfig.warmup": "--warmup",
    "TrainConfig.eval_every": "--eval-every",
    "TrainConfig.save_every": "--save-every",
    "TrainConfig.seed": "--seed",
    "TrainConfig.bf16": "--bf16",
    "TrainConfig.output": "--out",
    "TrainConfig.fsdp": "--fsdp",
    "device": "--device",
    "precision": "--precision",
}

# ``atenea.generate`` / ``GenerationConfig`` -> ``atenea generate``.
GENERATE_FLAGS = {
    "input_ids": "--prompt",
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "num_beams": "--num-beams",
    "device": "--device",
}

# ``atenea.inspect.explain`` / ``explain_seq2seq`` -> ``atenea explain``.
EXPLAIN_FLAGS = {
    "focus": "--focus",
    "target": "--target",
    "max_new_tokens": "--max-new-tokens",
    "max_tokens": "--max-tokens",
    "device": "--device",
}


def as_flags(message: str, flags: dict[str, str]) -> str:
    """``message`` with the library's argument names written as the flags that set them: the
    argument a message starts with (``size: ...`` -> ``--size: ...``), and a qualified setting
    (``TrainConfig.lr``) wherever it appears. Other words are left alone ("data" in a sentence
    is not the argument)."""
    head, colon, rest = message.partition(":")
    if colon and head in flags:
        message = flags[head] + colon + rest
    qualified = sorted((name for name in flags if "." in name), key=len, reverse=True)
    if qualified:
        pattern = r"(?<![\w.])(" + "|".join(map(re.escape, qualified)) + r")(?!\w)"
        message = re.sub(pattern, lambda match: flags[match.group(1)], message)
    return message


def fail(command: str, error: BaseException, code: int = 2, flags: dict | None = None) -> int:
    """Print ``atenea COMMAND: <first line of the error>`` to stderr, the library's argument
    names written as ``flags`` say; return ``code``. A closed pipe (``| head``) is an
    ``OSError`` too, and not the user's mistake: it goes on to ``main``, which ends quietly."""
    if isinstance(error, BrokenPipeError):
        raise error
    text = str(error).strip()
    message = text.splitlines()[0] if text else type(error).__name__
    if flags:
        message = as_flags(message, flags)
    print(f"atenea {command}: {message}", file=sys.stderr)
    return code


def with_article(name: str) -> str:
    """``"an EncoderModel"``, ``"a DecoderModel"``: a class name in a sentence."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def check_utf8(name: str, value: str | None) -> None:
    """Refuse a text argument that came from the command line with bytes that are not UTF-8:
    Python keeps such bytes as lone surrogates (``surrogateescape``), which no tokenizer takes
    (it would fail deep inside with a TypeError). Paths are not checked: a file name may hold
    any bytes."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid UTF-8 (check the terminal's encoding)") from None
