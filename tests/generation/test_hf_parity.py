"""Same weights, same tokens: atenea.generate against Hugging Face's generate on GPT-2 and on
Llama with grouped-query attention, saved by transformers and loaded by atenea.

The batch has three rows with different left padding (9, 6 and 3 real tokens), so each row's
positions (learned or rotary) and padding mask must be right for the tokens to agree.
"""

import pytest
import torch

import atenea
from tests.generation import tiny

NEW = 16


@pytest.fixture(params=["gpt2", "llama"])
def pair(request):
    return request.getfixturevalue(f"{request.param}_pair")


def hf_generate(hf, ids, mask, **kwargs):
    # top_k=0: Hugging Face's generation config would otherwise sample among 50 tokens.
    kwargs = {"top_k": 0, **kwargs}
    return hf.generate(
        ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=tiny.PAD, **kwargs
    )


def test_greedy_tokens_equal_hugging_face_with_left_padding(pair):
    hf, ours = pair
    ids, mask = tiny.left_padded()
    expected = hf_generate(hf, ids, mask, do_sample=False)
    out = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW)
    assert out.shape == (3, 9 + NEW)
    assert torch.equal(out, expected)
    assert len(set(out[0, 9:].tolist())) > 3  # a varied continuation, not one repeated token


def test_greedy_rows_ending_early_match_hugging_face(pair):
    hf, ours = pair
    ids, mask = tiny.left_padded(seed=3)
    free = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    eos = int(free[1, 9 + 2])  # the third token of row 1 ends that row
    expected = hf_generate(hf, ids, mask, do_sample=False, eos_token_id=eos)
    out = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos)
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "options",
    [
        {"early_stopping": True},
        {"early_stopping": True, "length_penalty": 0.5},
        {"early_stopping": False, "length_penalty": 2.0},
        {"early_stopping": "never"},
    ],
    ids=["default", "short", "long-heuristic", "never"],
)
def test_beam_search_equals_hugging_face(pair, options):
    # early_stopping given to both: atenea's default is True, Hugging Face's config says False.
    hf, ours = pair
    ids, mask = tiny.left_padded()
    # An end token the beams actually meet, so finished hypotheses and early stopping matter.
    free = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    eos = int(free[0, 9 + 3])
    expected = hf_generate(hf, ids, mask, num_beams=4, eos_token_id=eos, **options)
    out = atenea.generate(
        ours, ids, attention_mask=mask, max_new_tokens=NEW, num_beams=4, eos_token_id=eos,
        **options,
    )  # fmt: skip
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.7, "top_k": 20}, {"top_p": 0.8}, {"min_p": 0.1, "temperature": 1.5}],
    ids=["plain", "top-k", "top-p", "min-p"],
)
def test_seeded_sampling_draws_what_hugging_face_draws(gpt2_pair, options):
    # Same distribution, same torch.multinomial call per step: the same seed gives the same text.
    hf, ours = gpt2_pair
    ids, mask = tiny.left_padded()
    torch.manual_seed(5)
    expected = hf_generate(hf, ids, mask, do_sample=True, **options)
    torch.manual_seed(5)
    out = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True,
                          **options)  # fmt: skip
    assert torch.equal(out, expected)


@pytest.mark.parametrize("options", [{}, {"top_k": 5}], ids=["plain", "top-k"])
def test_seeded_beam_sampling_keeps_what_hugging_face_keeps(pair, options):
    """Beam search drawing its 2K continuations: they are ranked by score before the K best
    that ended become hypotheses, so at the length limit, where every one ends, the same seed
    finishes with the same beams."""
    hf, ours = pair
    ids, mask = tiny.left_padded()
    kwargs = dict(num_beams=3, do_sample=True, early_stopping=True, **options)
    torch.manual_seed(3)
    expected = hf_generate(hf, ids, mask, **kwargs)
    torch.manual_seed(3)
    out = atenea.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW, **kwargs)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_tokens_equal_hugging_face_on_the_fast_kernels(pair, num_beams,
                                                      every_product_on_the_fast_kernels):  # fmt: skip
    # Batch of one (the decode step's products are matrix-vector products, atenea's matvec) and
    # of three (oneDNN), greedy and beams: the tokens stay Hugging Face's.
    hf, ours = pair
    ids, mask = tiny.left_padded(seed=2)
    for rows in (slice(0, 1), slice(None)):
        kwargs = dict(do_sample=False, num_beams=num_beams)
        expected = hf_generate(hf, ids[rows], mask[rows], **kwargs)
        out = atenea.generate(ours, ids[rows], attention_mask=mask[rows], max_new_tokens=NEW,
                              **kwargs)  # fmt: skip
        assert torch.equal(out, expected)
