"""``explain(..., focus=WORD)`` follows a whole word, compared through the tokenizer's own
normalizer: MiniLM's uncased tokenizer strips accents, so ``niño`` finds ``nino``; a prefix is
never taken for the word (``carburetor`` is not ``car``)."""

import pytest

from atenea.inspect.focus import find_focus
from atenea.inspect.tokens import ExplainError
from atenea.models import load_pretrained

SPANISH = "El niño llegó mañana, un año después."


@pytest.fixture(scope="module")
def tokenizer():
    return load_pretrained("minilm")[1]


def _focus(tokenizer, text, word, pair=None):
    tokens = tokenizer.tokens(tokenizer(text, pair)["input_ids"][0])
    index = find_focus(tokenizer, text, pair, word, tokens)
    return index, tokens


@pytest.mark.parametrize(
    ("word", "first_piece", "index"),
    [("niño", "nino", 2), ("mañana", "mana", 5), ("año", "an", 9), ("NIÑO", "nino", 2),
     ("después", "des", 11), ("Un", "un", 8)],
)  # fmt: skip
def test_accented_words_are_found_as_the_tokenizer_writes_them(tokenizer, word, first_piece,
                                                                 index):  # fmt: skip
    found, tokens = _focus(tokenizer, SPANISH, word)
    assert (found, tokens[found]) == (index, first_piece)


def test_a_prefix_is_not_the_word(tokenizer):
    found, tokens = _focus(tokenizer, "the carburetor broke", "carburetor")
    assert tokens[found : found + 4] == ["car", "##bu", "##ret", "##or"]  # its first piece
    with pytest.raises(ExplainError, match="'carburetor' is not a word of the text; its words"):
        _focus(tokenizer, "the car broke", "carburetor")
    with pytest.raises(ExplainError, match="'an' is not a word"):
        _focus(tokenizer, SPANISH, "an")  # a piece of "año", not a word of the text


def test_the_pair_and_a_named_token(tokenizer):
    found, tokens = _focus(tokenizer, "the robot", "it", pair="it was heavy")
    assert tokens[found] == "it" and found == tokens.index("[SEP]") + 1
    found, tokens = _focus(tokenizer, "the carburetor", "##ret")
    assert tokens[found] == "##ret"


def test_a_tokenizer_of_characters_has_words_too():
    """Its pre-tokenizer makes every character a word; runs of letters are the words then, and a
    prefix is still not one ("ma" is not "mat")."""
    from atenea.training.tokenizers import train_tokenizer

    chars = train_tokenizer(["the cat sat on the mat."] * 4, kind="chars")
    found, tokens = _focus(chars, "the cat sat on the mat.", "mat")
    assert found == 19 and tokens[19:22] == ["m", "a", "t"]
    assert _focus(chars, "the cat sat on the mat.", ".")[0] == 22
    with pytest.raises(ExplainError, match="its words: the cat sat on mat ."):
        _focus(chars, "the cat sat on the mat.", "ma")
