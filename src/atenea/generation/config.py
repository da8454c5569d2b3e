"""``GenerationConfig``: every option of ``generate``, written once, checked before any work.

Names and meanings are Hugging Face's, so a call carries over. ``generate(model, ids,
max_new_tokens=32, do_sample=True)`` builds one from its keyword arguments; a config can also be
made once and passed (``generate(model, ids, config=GenerationConfig(num_beams=4))``), keyword
arguments then override it.

Every refusal is a ``ValueError`` (or ``TypeError``) naming the option, what was expected and
what came. ``resolve`` fills in what depends on the model, as Hugging Face does:
``eos_token_id=None`` takes the model config's, ``pad_token_id=None`` the config's, else the
(first) end-of-sequence id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GenerationConfig:
    """How ``generate`` continues a prompt.

    Attributes:
        max_new_tokens: new tokens at most (0: the prompt back).
        do_sample: draw each token from the distribution instead of taking the argmax;
            ``temperature`` (> 0), ``top_k``, ``top_p`` (in (0, 1]) and ``min_p`` (in [0, 1])
            shape it, applied in that order, when sampling. ``top_k=1`` is greedy.
        repetition_penalty: > 1 discourages tokens already in the row (prompt included).
        num_beams: > 1 for beam search; a beam's score is its summed log-probability over
            ``new_tokens ** length_penalty``. ``early_stopping``: True stops a row once it has
            ``num_beams`` finished beams; False / ``"never"`` keep going while a running beam
            could still do better (Hugging Face's heuristics).
        eos_token_id: token id(s) that end a row (None: the model config's; ``[]``: none).
            After ``resolve``: a tuple.
        pad_token_id: fills rows that ended while others go on (None: the config's, else the
            first end token).
        stop_strings: text that ends a row once generated (needs ``tokenizer``). After
            ``resolve``: a tuple.
        streamer: receives the tokens as they come (``put`` / ``end``, e.g. ``TextStreamer``);
            batch size 1, no beam search.
        generator: the random source of sampling (None: the global one, ``torch.manual_seed``).
        use_cache: False runs the whole sequence at every step (slow; the reference).
        return_beams: with ``num_beams > 1``, return a ``BeamSearchOutput`` (all beams and
            their scores) instead of the best sequences.
        compile: run the decode step of a decoder model through ``torch.compile`` with frozen
            weights, on a cache of fixed shapes (the first call compiles, for tens of seconds on
            a CPU, and again for new shapes; later calls reuse it). A model with a score
            modifier (ALiBi, relative bias) decodes eagerly: its scores depend on positions
            that only the filled part of the cache places right. Much faster on a CPU (see
            benchmarks/generation.py); the prepacked weights take memory besides the model's,
            and a model changed afterwards needs ``torch._dynamo.reset()``.
    """

    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = True
    eos_token_id: int | Sequence[int] | None = None
    pad_token_id: int | None = None
    stop_strings: str | Sequence[str] | None = None
    tokenizer: object = None
    streamer: object = None
    generator: torch.Generator | None = None
    use_cache: bool = True
    return_beams: bool = False
    compile: bool = False

    @classmethod
    def of(cls, config: GenerationConfig | None = None, **options) -> GenerationConfig:
        """``config`` (default: the defaults) with ``options`` replaced; an unknown option is a
        ``TypeError`` naming it."""
        if config is not None and not isinstance(config, GenerationConfig):
            raise TypeError(f"config: expected a GenerationConfig, got {type(config).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"generate: unknown option {', '.join(map(repr, unknown))}; the options are "
                f"{', '.join(sorted(known))}"
            )
        return dataclasses.replace(config or cls(), **options)

    def check(self) -> GenerationConfig:
        """Check the options that need no model (types and ranges) and return the config:
        a command line can refuse a bad flag before it reads a model."""
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise ValueError(
                f"max_new_tokens: expected an integer >= 0, got {self.max_new_tokens!r}"
            )
        if not _is_number(self.temperature) or not self.temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {self.temperature!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise ValueError(
                f"top_k: expected an integer >= 1 (0 or None: off), got {self.top_k!r}"
            )
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p: expected a number in (0, 1], got {self.top_p!r}")
        if self.min_p is not None and (not _is_number(self.min_p) or not 0 <= self.min_p <= 1):
            raise ValueError(f"min_p: expected a number in [0, 1], got {self.min_p!r}")
        penalty = self.repetition_penalty
        if penalty is not None and (not _is_number(penalty) or not penalty > 0):
            raise ValueError(f"repetition_penalty: expected a number > 0, got {penalty!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise ValueError(f"num_beams: expected an integer >= 1, got {self.num_beams!r}")
        if not _is_number(self.length_penalty):
            raise ValueError(f"length_penalty: expected a number, got {self.length_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f"early_stopping: expected True, False or 'never', got {self.early_stopping!r}"
            )
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(
                f"generator: expected a torch.Generator, got {type(self.generator).__name__}"
            )
        return self

    def resolve(self, model, vocab_size: int, batch: int) -> GenerationConfig:
        """Check every option and return the config ``generate`` runs: end and padding tokens
        filled in from ``model.config``, token ids checked against ``vocab_size``, the options
        that are off normalised to None (``top_k=0``, ``top_p=1``, ``repetition_penalty=1``).
        ``batch``: rows of the prompt (with beams, rows that can stop early need a pad id)."""
        self.check()
        eos = self.eos_token_id if self.eos_token_id is not None else model.config.eos_token_id
        eos_ids = () if eos is None else _token_ids(eos, "eos_token_id", vocab_size)
        pad = self.pad_token_id if self.pad_token_id is not None else model.config.pad_token_id
        if pad is None and eos_ids:
            pad = eos_ids[0]  # as Hugging Face: finished rows are filled with the end token
        if pad is not None:
            pad = _token_ids(pad, "pad_token_id", vocab_size)[0]

        stops = self.stop_strings
        stops = (stops,) if isinstance(stops, str) else tuple(stops or ())
        if not all(isinstance(text, str) and text for text in stops):
            raise ValueError(f"stop_strings: expected non-empty strings, got {self.stop_strings!r}")
        if stops and self.tokenizer is None:
            raise ValueError("tokenizer: stop_strings need a tokenizer to read the generated text")
        if stops and pad is None and batch * self.num_beams > 1:
            raise ValueError(
                "pad_token_id: rows that stop early are filled with pad_token_id, and neither it "
                "nor an eos_token_id is known; give pad_token_id"
            )
        if self.streamer is not None and self.num_beams > 1:
            raise ValueError(
                "streamer: beam search cannot stream (the best beam is known at the end)"
            )
        return dataclasses.replace(
            self,
            do_sample=bool(self.do_sample),
            temperature=float(self.temperature),
            top_k=self.top_k or None,
            top_p=None if self.top_p is None or self.top_p == 1 else float(self.top_p),
            min_p=None if self.min_p is None else float(self.min_p),
            repetition_penalty=(
                None if self.repetition_penalty in (None, 1) else float(self.repetition_penalty)
            ),
            length_penalty=float(self.length_penalty),
            eos_token_id=eos_ids,
            pad_token_id=pad,
            stop_strings=stops,
            use_cache=bool(self.use_cache),
            return_beams=bool(self.return_beams),
            compile=bool(self.compile),
        )


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
