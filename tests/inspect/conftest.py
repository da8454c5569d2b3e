"""A tiny BERT checkpoint with a word-level tokenizer whose vocabulary holds hostile tokens."""

import pytest
import torch
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers, processors

from atenea.models import EncoderConfig, EncoderModel, Tokenizer, save_pretrained

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
    save_pretrained(EncoderModel(config), folder, tokenizer)
    return folder


SOURCE_WORDS = (
    "el banco cerró la puerta porque era tarde . the bank closed door it was late".split()
)


def make_seq2seq_tokenizer() -> Tokenizer:
    """A word-level tokenizer trained here with the ``tokenizers`` library (specials
    ``<pad> <unk> <s> </s>``, ids 0..3: BOS and EOS are *not* the config's defaults 1 and 2,
    so a mix-up of the two shows)."""
    from tokenizers import trainers

    backend = Backend(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"])
    backend.train_from_iterator([" ".join(SOURCE_WORDS), *HOSTILE], trainer=trainer)
    special = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
    return Tokenizer(backend, special)


def sharpen(model, factor: float = 20.0) -> None:
    """Scale every query and key projection: a freshly initialised model attends almost
    uniformly (every weight 1/L, ties everywhere); scaled scores give peaked maps whose
    strongest tokens are well defined."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                parameter.mul_(factor)


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory):
    """A folder with a random transformer-tiny encoder-decoder (2 + 3 layers, 4 heads,
    pre-norm, sharpened attention) and the word-level tokenizer above."""
    from atenea.models import EncoderDecoderConfig, EncoderDecoderModel, save_pretrained

    torch.manual_seed(0)
    tokenizer = make_seq2seq_tokenizer()
    vocab = tokenizer.vocab_size
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, num_decoder_layers=3,
        bos_token_id=tokenizer.token_id("bos"), eos_token_id=tokenizer.token_id("eos"),
        dropout=0.0, norm_position="pre",
    )  # fmt: skip
    model = EncoderDecoderModel(config)
    sharpen(model)
    folder = tmp_path_factory.mktemp("tiny_seq2seq")
    save_pretrained(model, folder, tokenizer)
    return folder


# Tokens that test the report's text layout: right-to-left words, a right-to-left override
# (U+202E) that would reverse everything after it, emoji outside the Basic Multilingual Plane
# (surrogate pairs in JavaScript), a word too long for any label.
ARABIC, HEBREW, OVERRIDE = "مرحبا", "שלום", "\u202eevil0.99"
EMOJI = "a" + "\U0001f600" * 20  # cut after 14 UTF-16 units: half an emoji
LONG = "x" * 200
LAYOUT_WORDS = ["robot", "picked", "the", "wrench", ARABIC, HEBREW, OVERRIDE, EMOJI, LONG]


def layout_tokenizer(specials: dict, template) -> Tokenizer:
    """A word-level tokenizer over ``LAYOUT_WORDS``: each word one token, kept whole."""
    names = list(dict.fromkeys(specials.values()))
    vocab = {t: i for i, t in enumerate([*names, *LAYOUT_WORDS])}
    backend = Backend(models.WordLevel(vocab, unk_token=specials["unk"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(names)  # left out of decoded text, as a trained tokenizer's
    if template is not None:
        backend.post_processor = template
    return Tokenizer(backend, specials, model_max_length=64)


@pytest.fixture(scope="session")
def layout_models(tmp_path_factory):
    """Folders ``bert``, ``seq2seq`` and ``rnn``: random tiny models over ``LAYOUT_WORDS``."""
    from atenea.models import EncoderDecoderConfig, EncoderDecoderModel, RNNConfig, RNNSearch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("layout")
    special = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    template = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )  # fmt: skip
    tokenizer = layout_tokenizer(special, template)
    config = EncoderConfig.from_name("bert-tiny", vocab_size=tokenizer.vocab_size, num_layers=2,
                                     num_heads=2, dim=16, ffn_hidden=32, max_positions=64)  # fmt: skip
    save_pretrained(EncoderModel(config), root / "bert", tokenizer)
    special = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
    tokenizer = layout_tokenizer(special, None)
    vocab, bos, eos = tokenizer.vocab_size, tokenizer.token_id("bos"), tokenizer.token_id("eos")
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, num_decoder_layers=2,
        bos_token_id=bos, eos_token_id=eos, dropout=0.0, norm_position="pre",
    )  # fmt: skip
    save_pretrained(EncoderDecoderModel(config), root / "seq2seq", tokenizer)
    config = RNNConfig.from_name("rnnsearch-tiny", src_vocab_size=vocab, tgt_vocab_size=vocab,
                                 bos_token_id=bos, eos_token_id=eos)  # fmt: skip
    save_pretrained(RNNSearch(config), root / "rnn", tokenizer)
    return root
