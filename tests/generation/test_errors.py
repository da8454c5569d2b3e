"""Bad arguments are refused before any work, with a message naming the argument."""

import pytest
import torch

import atenea
from atenea.generation import TextStreamer
from tests.generation import tiny

IDS = torch.tensor([[5, 6, 7]])


@pytest.fixture
def model(gpt2_pair):
    """The atenea GPT-2, whose forward must not run for a refused call."""
    model = gpt2_pair[1]

    def forward(*args, **kwargs):
        raise AssertionError("the model ran before the arguments were checked")

    model.forward = forward
    yield model
    del model.forward


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), "input_ids: the prompt is empty"),
        (dict(input_ids=torch.tensor([5, 6])), r"input_ids: expected shape \(B, L\)"),
        (dict(input_ids=torch.tensor([[0.5]])), "input_ids: expected integer"),
        (dict(input_ids=torch.tensor([[tiny.VOCAB]])), "input_ids: token ids must lie"),
        (dict(max_new_tokens=-1), "max_new_tokens: expected an integer >= 0"),
        (dict(max_new_tokens=2.5), "max_new_tokens"),
        (dict(top_p=0.0), r"top_p: expected a number in \(0, 1\]"),
        (dict(top_p=1.5), "top_p"),
        (dict(num_beams=0), "num_beams: expected an integer >= 1"),
        (dict(temperature=0.0), "temperature: expected a number > 0"),
        (dict(top_k=-2), "top_k"),
        (dict(min_p=2.0), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(early_stopping="sometimes"), "early_stopping"),
        (dict(eos_token_id=tiny.VOCAB + 3), "eos_token_id: token id"),
        (dict(pad_token_id=-1), "pad_token_id"),
        (dict(input_ids=torch.zeros(1, 65, dtype=torch.long)), "input_ids: the prompt has 65"),
        (dict(max_new_tokens=62), "max_new_tokens: 3 \\+ 62 new tokens exceed"),
        (dict(attention_mask=torch.tensor([[1, 1, 0]])), "attention_mask: every row must end"),
        (dict(attention_mask=torch.tensor([[1, 0, 1]])), "attention_mask: padding must all be"),
        (dict(attention_mask=torch.tensor([[0, 0, 0]])), "attention_mask: a row has no real"),
        (dict(attention_mask=torch.tensor([[1, 1]])), "attention_mask: expected the shape"),
        (dict(stop_strings=["w5"]), "tokenizer: stop_strings need a tokenizer"),
        (dict(stop_strings=[""], tokenizer=tiny.word_tokenizer()), "stop_strings"),
        (dict(num_beams=2, streamer=TextStreamer(tiny.word_tokenizer())), "streamer"),
        (dict(generator=0), "generator"),
    ],
)
def test_bad_arguments_are_named(model, kwargs, message):
    kwargs = {"input_ids": IDS, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        atenea.generate(model, **kwargs)


def test_only_atenea_generative_models(model):
    with pytest.raises(TypeError, match="model: expected an atenea DecoderModel"):
        atenea.generate(torch.nn.Linear(2, 2), IDS)
