"""Training tokenizers: round trips, special tokens and templates, determinism, save/load."""

import random

import pytest

from atenea.models.tokenizer import Tokenizer
from atenea.training.tokenizers import train_tokenizer

WORDS = (
    "veintiuno de noviembre ñandú corre rápido por el campo año pingüino acción canción "
    "the attention transformer model learns which tokens matter training data"
).split()


def corpus(count=300, seed=0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) + rng.choice(("", "s", "ing", "ed")) for _ in range(10)) + "."
        for _ in range(count)
    ]


SAMPLES = [
    "veintiuno de noviembre",
    "ñandú",
    "El Ñandú corre, ¿rápido?  ¡Sí!\n\tdos espacios",
    "The attention model: 42 tokens.",
]


@pytest.mark.parametrize("template", ["none", "bert"])
@pytest.mark.parametrize("kind", ["bpe", "chars"])
def test_round_trip(kind, template):
    tokenizer = train_tokenizer(corpus() + SAMPLES, kind=kind, vocab_size=400, template=template)
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_byte_level_bpe_round_trips_text_it_never_saw():
    tokenizer = train_tokenizer(corpus(), kind="bpe", vocab_size=400)
    for text in ("Zürich 東京 😀 \x01", "  leading and trailing  "):
        ids = tokenizer.encode(text)
        assert 1 not in ids  # no <unk>: every byte has a symbol
        assert tokenizer.decode(ids) == text


def test_bpe_learns_merges():
    tokenizer = train_tokenizer(corpus(), kind="bpe", vocab_size=400)
    assert tokenizer.vocab_size == 400
    # a frequent word is one token, far fewer than its bytes
    assert len(tokenizer.encode("attention")) < len("attention") // 2


def test_wordpiece_lowercases_keeps_accents_and_uses_prefix():
    tokenizer = train_tokenizer(corpus(), kind="wordpiece", vocab_size=200, template="bert")
    ids = tokenizer.encode("Veintiuno de Noviembre ÑANDÚ")
    assert tokenizer.decode(ids) == "veintiuno de noviembre ñandú"
    pieces = tokenizer.tokens(tokenizer.encode("transformers", add_special_tokens=False))
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])


def test_special_tokens_and_templates():
    texts = corpus()
    plain = train_tokenizer(texts, kind="bpe", vocab_size=400, template="none")
    assert [plain.token_id(r) for r in ("pad", "unk", "bos", "eos")] == [0, 1, 2, 3]
    assert plain.token_id("cls") is None
    ids = plain.encode("el campo")
    assert 2 not in ids and 3 not in ids  # the task adds BOS / EOS itself

    bert = train_tokenizer(texts, kind="wordpiece", vocab_size=200, template="bert", max_length=64)
    assert [bert.token_id(r) for r in ("pad", "unk", "cls", "sep", "mask")] == [0, 1, 2, 3, 4]
    assert bert.model_max_length == 64 and bert.padding_side == "right"
    single = bert.encode("el campo")
    assert single[0] == 2 and single[-1] == 3
    assert bert.encode("el campo", add_special_tokens=False) == single[1:-1]
    pair = bert.backend.encode("el campo", "por el")
    assert pair.ids[0] == 2 and pair.ids.count(3) == 2 and pair.ids[-1] == 3
    assert pair.type_ids == [0] * (len(single)) + [1] * (len(pair.ids) - len(single))
    # the special tokens are never split into pieces
    assert bert.encode("[MASK]", add_special_tokens=False) == [4]


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "chars"])
def test_same_texts_give_the_same_tokenizer_json(kind):
    texts = corpus(400, seed=5)
    first = train_tokenizer(texts, kind=kind, vocab_size=300, template="bert")
    for _ in range(3):
        again = train_tokenizer(iter(texts), kind=kind, vocab_size=300, template="bert")
        assert again.backend.to_str() == first.backend.to_str()


@pytest.mark.parametrize("kind", ["bpe", "chars"])
def test_a_texts_own_special_token_strings_stay_text(tmp_path, kind):
    """HTML's <s>...</s> is text to a decoder's tokenizer: no end-of-document id in the middle
    of a document, and the text round-trips, also after a save and load (the option lives in
    tokenizer_config.json, as Hugging Face's split_special_tokens)."""
    text = "old <s>price</s> new <pad> <unk>"
    tokenizer = train_tokenizer(corpus() + [text], kind=kind, vocab_size=400)
    tokenizer.save(tmp_path)
    for each in (tokenizer, Tokenizer.from_folder(tmp_path)):
        ids = each.encode(text)
        assert not set(ids) & {0, 1, 2, 3} and each.decode(ids) == text
    bert = train_tokenizer(corpus(), kind="wordpiece", vocab_size=300, template="bert")
    assert bert.encode("a [MASK] b", add_special_tokens=False)[1] == 4  # fill-mask's [MASK]


def test_max_length_below_the_special_tokens_is_refused():
    tokenizer = train_tokenizer(corpus(), kind="wordpiece", vocab_size=300, template="bert")
    assert tokenizer.special_count() == 2 and tokenizer.special_count(pair=True) == 3
    assert tokenizer(["el campo verde"], max_length=3)["input_ids"].shape == (1, 3)
    for limit in (1, 2):  # more tokens than asked, or none of the text: said, not done
        with pytest.raises(ValueError, match=rf"max_length: {limit} tokens cannot hold a token "
                                             r"of the text besides the 2 special tokens this "
                                             r"tokenizer adds around each input; use at least "
                                             r"3"):  # fmt: skip
            tokenizer(["el campo verde"], max_length=limit)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "chars"])
def test_save_and_load_keep_ids(tmp_path, kind):
    tokenizer = train_tokenizer(corpus(), kind=kind, vocab_size=300, template="bert", max_length=32)
    tokenizer.save(tmp_path)
    loaded = Tokenizer.from_folder(tmp_path)
    for text in SAMPLES:
        assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.pad_token_id == 0 and loaded.model_max_length == 32
    batch = loaded(["el campo", "ñandú corre por el campo"])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"][0, -1] == 0


def test_chars_vocabulary_is_the_characters_seen():
    tokenizer = train_tokenizer(["ba c", "ab\n"], kind="chars", vocab_size=10)
    vocab = tokenizer.backend.get_vocab()
    assert sorted(vocab, key=vocab.get) == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
        "\n",
        " ",
        "a",
        "b",
        "c",
    ]
    assert tokenizer.decode(tokenizer.encode("cab z")) == "cab "  # unseen "z" -> <unk>, skipped


def test_bad_arguments():
    with pytest.raises(ValueError, match="texts: no text"):
        train_tokenizer([])
    with pytest.raises(ValueError, match="texts: no text"):
        train_tokenizer(["", "  \n"])
    with pytest.raises(ValueError, match=r"vocab_size: bpe needs at least 260 entries, got 100"):
        train_tokenizer(["hello"], kind="bpe", vocab_size=100)
    with pytest.raises(ValueError, match="kind: expected one of bpe, wordpiece, chars"):
        train_tokenizer(["hello"], kind="unigram")
    with pytest.raises(ValueError, match="template: expected one of none, bert"):
        train_tokenizer(["hello"], template="gpt")
    with pytest.raises(TypeError, match="texts: expected an iterable of texts"):
        train_tokenizer("hello")
