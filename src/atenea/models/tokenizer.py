"""A thin wrapper over the ``tokenizers`` library: encode, decode, and padded batches, with the
special tokens a checkpoint folder declares."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from tokenizers import Tokenizer as BackendTokenizer

SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")


class Tokenizer:
    """Text <-> token ids. ``tokenizer(texts)`` returns a padded batch
    ``{"input_ids", "attention_mask", "token_type_ids"}`` of ``(B, L)`` tensors.

    Args:
        backend: a ``tokenizers.Tokenizer`` (its post-processor adds [CLS]/[SEP] or BOS).
        special_tokens: ``{"pad": "[PAD]", "cls": "[CLS]", ...}`` (names of SPECIAL_NAMES).
        model_max_length: longest input the model takes (truncation limit), if known.
        padding_side: ``"right"`` (encoders) or ``"left"`` (decoders generating in batches).
        split_special_tokens: a special token's text inside a text ("</s>" in HTML) is read as
            plain text, not as the token (Hugging Face's option of that name). atenea's own
            tokenizers for decoders set it: their texts are raw, the task adds BOS/EOS by id.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        split_special_tokens: bool = False,
    ):
        # Padding and truncation are ours to decide per call: a tokenizer.json may carry its own
        # (all-MiniLM-L6-v2's pads every input to 128 tokens, marking the padding as real).
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        self.model_max_length = model_max_length
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side: expected 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side
        # kept on the backend, where encoding reads it (tokenizer.json does not store it)
        backend.encode_special_tokens = split_special_tokens

    @property
    def split_special_tokens(self) -> bool:
        return self.backend.encode_special_tokens

    # -- folders ---------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path, padding_side: str | None = None) -> Tokenizer:
        """Read ``tokenizer.json`` and the special tokens of ``tokenizer_config.json`` /
        ``special_tokens_map.json`` from a Hugging Face style folder."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json in this folder")
        try:
            backend = BackendTokenizer.from_file(str(path))
        except Exception as error:  # the library raises a bare Exception on bad JSON
            raise ValueError(f"{path}: not a valid tokenizers file ({error})") from None
        settings: dict = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (folder / name).is_file():
                try:
                    settings.update(json.loads((folder / name).read_text(encoding="utf-8")))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{folder / name}: invalid JSON ({error})") from None
        special = {}
        for key in SPECIAL_NAMES:
            value = settings.get(f"{key}_token")
            if isinstance(value, dict):  # {"content": "[PAD]", ...}
                value = value.get("content")
            if isinstance(value, str):
                special[key] = value
        max_length = settings.get("model_max_length")
        if not isinstance(max_length, int) or max_length > 10**8:
            max_length = None  # HF writes a huge sentinel when unknown
        side = padding_side or settings.get("padding_side") or "right"
        split = settings.get("split_special_tokens") is True
        return cls(backend, special, max_length, side, split_special_tokens=split)

    def save(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        config = {f"{k}_token": v for k, v in self.special_tokens.items()}
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")

    # -- special tokens --------------------------------------------------------------------
    def token_id(self, name: str) -> int | None:
        """Id of a special token by role (``"pad"``, ``"cls"``, ...), or None."""
        token = self.special_tokens.get(name)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def pad_token_id(self) -> int | None:
        return self.token_id("pad")

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id("eos")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    # -- encode / decode -------------------------------------------------------------------
    def encode(
        self, text: str, pair: str | None = None, add_special_tokens: bool = True
    ) -> list[int]:
        return self.backend.encode(text, pair, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def special_count(self, pair: bool = False) -> int:
        """How many special tokens encoding adds around an input (a pair if ``pair``): the
        post-processor's, counted once (every truncating call asks)."""
        counts = self.__dict__.setdefault("_special_counts", {})
        if pair not in counts:
            counts[pair] = len(self.backend.encode("", "" if pair else None).ids)
        return counts[pair]

    def tokens(self, ids) -> list[str]:
        """The token string of every id (for labels in pictures)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.backend.id_to_token(i) or f"<{i}>" for i in ids]

    def _encodings(self, texts, pairs, max_length, truncation, add_special_tokens):
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(pairs, str):
            pairs = [pairs]
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"pairs: expected {len(texts)} second sentences, got {len(pairs)}")
        limit = max_length or self.model_max_length
        if truncation and limit and limit <= (added := self.special_count(pairs is not None)):
            # the library would keep the special tokens whole past the limit, and say nothing
            raise ValueError(
                f"max_length: {limit} tokens cannot hold a token of the text besides the "
                f"{added} special tokens this tokenizer adds around each input; use at least "
                f"{added + 1}"
            )
        if truncation and limit:
            self.backend.enable_truncation(limit)
        try:
            inputs = list(zip(texts, pairs)) if pairs is not None else texts
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self.backend.no_truncation()
        if truncation and limit and max_length is None and any(e.overflowing for e in encodings):
            # Cut by the default, not by the caller: say so (a model may take more than the
            # tokenizer's model_max_length, e.g. MiniLM's 256 of its 512 positions).
            warnings.warn(
                f"tokenizer: a text longer than model_max_length={limit} tokens was cut to "
                f"{limit}; pass max_length (up to the model's positions) or truncation=False",
                stacklevel=3,
            )
        return encodings

    def encode_batch(
        self, texts: list[str], *, max_length: int | None = None, truncation: bool = True,
        add_special_tokens: bool = True,
    ) -> list[list[int]]:  # fmt: skip
        """Token ids of many texts (tokenized in parallel), truncated like ``__call__``, not
        padded: for callers that batch them themselves (e.g. sorted by length)."""
        encodings = self._encodings(texts, None, max_length, truncation, add_special_tokens)
        return [e.ids for e in encodings]

    def __call__(
        self,
        texts: str | list[str],
        pairs: str | list[str] | None = None,
        *,
        max_length: int | None = None,
        truncation: bool = True,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, torch.Tensor]:
        """A padded batch of ``(B, L)`` tensors; truncated to ``max_length`` (default: the
        model's maximum) when ``truncation``."""
        encodings = self._encodings(texts, pairs, max_length, truncation, add_special_tokens)
        return self.pad([e.ids for e in encodings], [e.type_ids for e in encodings], padding_side)

    def pad(self, sequences, type_ids=None, padding_side: str | None = None) -> dict:
        """Pad lists of ids into ``(B, L)`` tensors (pad id 0 when the vocabulary has none)."""
        side = padding_side or self.padding_side
        length = max((len(s) for s in sequences), default=0)
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        batch = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        for index, ids in enumerate(sequences):
            fill = length - len(ids)
            types = type_ids[index] if type_ids is not None else [0] * len(ids)
            before, after = (fill, 0) if side == "left" else (0, fill)
            batch["input_ids"].append([pad_id] * before + list(ids) + [pad_id] * after)
            batch["attention_mask"].append([0] * before + [1] * len(ids) + [0] * after)
            batch["token_type_ids"].append([0] * before + list(types) + [0] * after)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
