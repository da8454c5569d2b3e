"""Byte-level BPE pieces are shown as the text they stand for, never as ``Ġ`` / ``Ċ`` / ``Ã©``."""

import torch
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers, trainers

from atenea.inspect.tokens import token_labels
from atenea.models import Tokenizer

TEXT = "def año():\n        return 1\n"


def _byte_level() -> Tokenizer:
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    backend.train_from_iterator([TEXT] * 20, trainer)
    return Tokenizer(backend, {"bos": "<s>"})


def test_pieces_read_as_text():
    tokenizer = _byte_level()
    ids = torch.tensor(tokenizer.encode(TEXT))
    raw = tokenizer.tokens(ids)
    assert any("Ġ" in t or "Ċ" in t or "Ã" in t for t in raw)  # what the old labels showed
    labels, special = token_labels(tokenizer, ids)
    assert not any(ch in label for label in labels for ch in "ĠĊÃ±")
    assert "año" in labels or any("ñ" in label for label in labels)
    assert "\\n" + "\u2423" * 7 in labels  # the newline and its indentation, not ĊĠĠĠĠĠĠĠ
    rebuilt = "".join(tokenizer.backend.decoder.decode([t]) for t in raw)
    assert rebuilt == TEXT and not any(special)
