"""A tokenizer that cuts a text by its default length says so (MiniLM's tokenizer stops at 256
tokens; the model has 512 positions), and is silent when the caller chose the length."""

import warnings

import pytest

from atenea.models import load_pretrained


@pytest.fixture(scope="module")
def minilm():
    return load_pretrained("minilm")


def test_a_cut_by_the_default_length_warns(minilm):
    model, tokenizer = minilm
    long_text = "word " * 400
    with pytest.warns(UserWarning, match="model_max_length=256 tokens was cut to 256"):
        ids = tokenizer(long_text)["input_ids"]
    assert ids.shape[1] == 256 < model.config.max_positions
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenizer(long_text, max_length=512)["input_ids"].shape[1] == 402
        assert tokenizer("a short text")["input_ids"].shape[1] == 5
        assert len(tokenizer.encode_batch([long_text], truncation=False)[0]) == 402
