"""The arguments of ``generate``, checked and resolved before any work is done.

Every refusal is a ``ValueError`` (or ``TypeError``) naming the argument, what was expected and
what came. Defaults follow Hugging Face: ``eos_token_id=None`` takes the model config's,
``pad_token_id=None`` the config's, else the (first) end-of-sequence id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atenea.models.common import check_ids
from atenea.models.decoder import DecoderModel
from atenea.models.encoder_decoder import EncoderDecoderModel


@dataclass(frozen=True)
class Settings:
    """One ``generate`` call, resolved. ``eos_token_ids`` is a tuple (empty: never stop on a
    token); ``pad_token_id`` is None only when no row can finish early."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float | None
    min_p: float | None
    repetition_penalty: float | None
    num_beams: int
    length_penalty: float
    early_stopping: bool | str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    stop_strings: tuple[str, ...]
    tokenizer: object
    streamer: object
    generator: torch.Generator | None
    use_cache: bool
    return_beams: bool
    compile: bool


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _token_ids(value, name: str, vocab_size: int) -> tuple[int, ...]:
    values = [value] if _is_int(value) else value
    if isinstance(values, Tensor):
        values = values.flatten().tolist()
    if not isinstance(values, (list, tuple)) or not all(_is_int(v) for v in values):
        raise TypeError(f"{name}: expected a token id or a list of token ids, got {value!r}")
    for v in values:
        if not 0 <= v < vocab_size:
            raise ValueError(f"{name}: token id {v} is outside the vocabulary [0, {vocab_size})")
    return tuple(values)


def vocab_size_of(model) -> int:
    c = model.config
    return c.vocab_size if isinstance(model, DecoderModel) else c.tgt_vocab_size


def check_inputs(model, input_ids, attention_mask) -> None:
    """``input_ids (B, L)`` with L >= 1; ``attention_mask (B, L)`` with a real token in every
    row, left-padded for a decoder (its real tokens at the end; a source may be padded on
    either side)."""
    if not isinstance(model, (DecoderModel, EncoderDecoderModel)):
        raise TypeError(
            f"model: expected an atenea DecoderModel or EncoderDecoderModel, got "
            f"{type(model).__name__}"
        )
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"input_ids: expected a (B, L) tensor of token ids, got {type(input_ids)}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids: expected shape (B, L), got {tuple(input_ids.shape)}")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids: expected integer token ids, got dtype {input_ids.dtype}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids: the prompt is empty (shape {tuple(input_ids.shape)}); give at least one "
            f"token per row"
        )
    source_vocab = model.config.vocab_size if isinstance(model, DecoderModel) else None
    check_ids(input_ids, source_vocab or model.config.src_vocab_size)
    if attention_mask is None:
        return
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask: expected the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    real = attention_mask.bool()
    if not bool(real.any(dim=1).all()):
        raise ValueError("attention_mask: a row has no real token (all 0)")
    if isinstance(model, EncoderDecoderModel):
        return  # the encoder reads the source with any padding
    if not bool(real[:, -1].all()):
        raise ValueError(
            "attention_mask: every row must end with a real token (generation needs left "
            "padding: pad on the left, as Tokenizer(padding_side='left') does)"
        )
    # Left padding: once a row's real tokens start, they do not stop.
    if bool((real[:, :-1] & ~real[:, 1:]).any()):
        raise ValueError("attention_mask: padding must all be on the left of each row (0s then 1s)")


def check_lengths(model, input_ids: Tensor, max_new_tokens: int) -> None:
    """The prompt (decoder) or the output (encoder-decoder) must fit the model's positions."""
    limit = model.config.max_positions
    length = input_ids.shape[1]
    if length > limit:
        raise ValueError(
            f"input_ids: the prompt has {length} tokens but the model takes at most {limit} "
            f"positions (max_positions); shorten it"
        )
    generated = length if isinstance(model, DecoderModel) else 1  # encoder-decoder: BOS + new
    if generated + max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens: {generated} + {max_new_tokens} new tokens exceed the model's "
            f"{limit} positions (max_positions); ask for at most {limit - generated}"
        )


def resolve(model, input_ids, attention_mask, **arguments) -> Settings:
    """Check everything, then return the ``Settings`` of the call."""
    check_inputs(model, input_ids, attention_mask)
    a = arguments
    max_new = a["max_new_tokens"]
    if not _is_int(max_new) or max_new < 0:
        raise ValueError(f"max_new_tokens: expected an integer >= 0, got {max_new!r}")
    check_lengths(model, input_ids, max_new)
    temperature, top_k, top_p, min_p = a["temperature"], a["top_k"], a["top_p"], a["min_p"]
    if not _is_number(temperature) or not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise ValueError(f"top_k: expected an integer >= 1 (0 or None: off), got {top_k!r}")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p: expected a number in (0, 1], got {top_p!r}")
    if min_p is not None and (not _is_number(min_p) or not 0 <= min_p <= 1):
        raise ValueError(f"min_p: expected a number in [0, 1], got {min_p!r}")
    penalty = a["repetition_penalty"]
    if penalty is not None and (not _is_number(penalty) or not penalty > 0):
        raise ValueError(f"repetition_penalty: expected a number > 0, got {penalty!r}")
    num_beams = a["num_beams"]
    if not _is_int(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams: expected an integer >= 1, got {num_beams!r}")
    if not _is_number(a["length_penalty"]):
        raise ValueError(f"length_penalty: expected a number, got {a['length_penalty']!r}")
    if a["early_stopping"] not in (True, False, "never"):
        raise ValueError(
            f"early_stopping: expected True, False or 'never', got {a['early_stopping']!r}"
        )
    generator = a["generator"]
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")

    vocab = vocab_size_of(model)
    eos = a["eos_token_id"]
    eos = model.config.eos_token_id if eos is None else eos
    eos_ids = () if eos is None else _token_ids(eos, "eos_token_id", vocab)
    pad = a["pad_token_id"]
    pad = model.config.pad_token_id if pad is None else pad
    if pad is None and eos_ids:
        pad = eos_ids[0]  # as Hugging Face: finished rows are filled with the end token
    if pad is not None:
        pad = _token_ids(pad, "pad_token_id", vocab)[0]

    stop_strings = a["stop_strings"]
    stop_strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings or ())
    if not all(isinstance(s, str) and s for s in stop_strings):
        raise ValueError(f"stop_strings: expected non-empty strings, got {a['stop_strings']!r}")
    if stop_strings and a["tokenizer"] is None:
        raise ValueError("tokenizer: stop_strings need a tokenizer to read the generated text")
    rows = input_ids.shape[0] * num_beams
    if stop_strings and pad is None and rows > 1:
        raise ValueError(
            "pad_token_id: rows that stop early are filled with pad_token_id, and neither it nor "
            "an eos_token_id is known; give pad_token_id"
        )
    if a["streamer"] is not None and num_beams > 1:
        raise ValueError("streamer: beam search cannot stream (the best beam is known at the end)")
    return Settings(
        max_new_tokens=max_new,
        do_sample=bool(a["do_sample"]),
        temperature=float(temperature),
        top_k=top_k or None,
        top_p=None if top_p is None or top_p == 1 else float(top_p),
        min_p=None if min_p is None else float(min_p),
        repetition_penalty=None if penalty is None or penalty == 1 else float(penalty),
        num_beams=num_beams,
        length_penalty=float(a["length_penalty"]),
        early_stopping=a["early_stopping"],
        eos_token_ids=eos_ids,
        pad_token_id=pad,
        stop_strings=stop_strings,
        tokenizer=a["tokenizer"],
        streamer=a["streamer"],
        generator=generator,
        use_cache=bool(a["use_cache"]),
        return_beams=bool(a["return_beams"]),
        compile=bool(a["compile"]),
    )
