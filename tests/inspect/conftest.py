"""A tiny BERT checkpoint with a word-level tokenizer whose vocabulary holds hostile tokens."""

import pytest
import torch
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers, processors

from atenea.models import EncoderConfig, EncoderModel, Tokenizer

HOSTILE = [
    "</script><script>window.__pwned=1</script>",
    "<img/src=x/onerror=window.__pwned=2>",
    '"onmouseover="window.__pwned=3"',
    "&lt;b&gt;&amp;x",
]
WORDS = "the robot picked up wrench because it was heavy . a cat sat on mat el banco cerró".split()


def make_tokenizer() -> Tokenizer:
    vocab = {
        t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *HOSTILE])
    }
    backend = Backend(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    special = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    return Tokenizer(backend, special, model_max_length=24)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A folder with a random 3-layer, 4-head BERT and the hostile tokenizer."""
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    config = EncoderConfig.from_name(
        "bert-tiny",
        vocab_size=tokenizer.vocab_size,
        num_layers=3,
        num_heads=4,
        dim=32,
        ffn_hidden=64,
        max_positions=64,
    )
    folder = tmp_path_factory.mktemp("tiny_bert")
    EncoderModel(config).save_pretrained(folder, tokenizer)
    return folder
