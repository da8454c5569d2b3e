"""Decoding on atenea's own terms: the cache against recomputation, sampling, end tokens, stop
strings, beams and their scores, encoder-decoder models."""

import io
from types import SimpleNamespace

import pytest
import torch

import atenea
from atenea.generation import BeamSearchOutput, TextStreamer
from atenea.generation.decoding import decode_step
from tests.generation import tiny

NEW = 12


@pytest.fixture
def llama(llama_pair):
    return llama_pair[1]


@pytest.fixture
def gpt2(gpt2_pair):
    return gpt2_pair[1]


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_each_cached_step_gives_the_logits_of_a_full_forward(request, name):
    model = request.getfixturevalue(name)
    ids, mask = tiny.left_padded()
    cache = model.new_cache(3, ids.shape[1] + 4)
    with torch.no_grad():
        logits = model(ids, mask, cache=cache).logits[:, -1]  # the prefill
        for _ in range(4):
            expected = model(ids, mask).logits[:, -1]
            assert (logits - expected).abs().max() < 1e-4 * expected.abs().max()
            token = logits.argmax(-1)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(token)[:, None]], 1)
            logits = decode_step(model, token, cache)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_whole_cache_step_equals_a_step_on_the_filled_part(request, name):
    # The compiled step attends to the whole preallocated cache, its unwritten slots masked;
    # eagerly it must give what the step over the filled part gives.
    model = request.getfixturevalue(name)
    ids, mask = tiny.left_padded()
    capacity = ids.shape[1] + 5
    filled, whole = model.new_cache(3, capacity), model.new_cache(3, capacity, whole=True)
    with torch.no_grad():
        token = model(ids, mask, cache=filled).logits[:, -1].argmax(-1)
        model(ids, mask, cache=whole)
        for _ in range(4):
            ours, expected = decode_step(model, token, whole), decode_step(model, token, filled)
            assert (ours - expected).abs().max() < 1e-5 * expected.abs().max()
            token = expected.argmax(-1)
    assert whole.length == filled.length == ids.shape[1] + 4
    assert torch.equal(whole.key_mask, filled.key_mask)
    assert torch.equal(whole.next_position, filled.next_position)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_cached_decoding_equals_recomputing_every_step(request, model, num_beams):
    model = request.getfixturevalue(model)
    ids, mask = tiny.left_padded(seed=1)
    kwargs = dict(attention_mask=mask, max_new_tokens=NEW, num_beams=num_beams, eos_token_id=[])
    cached = atenea.generate(model, ids, **kwargs)
    recomputed = atenea.generate(model, ids, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_top_k_1_sampling_is_greedy(gpt2):
    ids, mask = tiny.left_padded()
    greedy = atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=NEW)
    sampled = atenea.generate(
        gpt2, ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=1,
        temperature=2.0,
    )  # fmt: skip
    assert torch.equal(sampled, greedy)


def test_sampling_is_reproducible_from_the_seed_or_a_generator(gpt2):
    ids, mask = tiny.left_padded()

    def draw(**kwargs):
        return atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True,
                               eos_token_id=[], **kwargs)  # fmt: skip

    torch.manual_seed(7)
    first = draw()
    torch.manual_seed(7)
    assert torch.equal(draw(), first)
    a = draw(generator=torch.Generator().manual_seed(3))
    b = draw(generator=torch.Generator().manual_seed(3))
    c = draw(generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The same draws, whichever generator carries the seed.
    assert torch.equal(first, draw(generator=torch.Generator().manual_seed(7)))


def test_a_row_that_ends_is_padded_while_the_others_go_on(llama):
    ids, mask = tiny.left_padded()
    free = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    eos = int(free[0, 9 + 2])  # row 0's third new token
    assert eos not in free[1:, 9:].flatten().tolist(), "pick an end token only row 0 meets"
    out = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos)
    assert torch.equal(out[0, : 9 + 3], free[0, : 9 + 3])
    assert (out[0, 9 + 3 :] == tiny.PAD).all()
    assert torch.equal(out[1:], free[1:])


def test_generation_stops_when_every_row_has_ended(llama):
    ids, mask = tiny.left_padded()
    free = atenea.generate(llama, ids[:1], max_new_tokens=NEW, eos_token_id=[])
    eos = int(free[0, 9 + 4])
    out = atenea.generate(llama, ids[:1], max_new_tokens=NEW, eos_token_id=[eos, tiny.EOS])
    assert torch.equal(out, free[:, : 9 + 5])
    # eos_token_id=None takes the config's; it is never produced here, so the output is full
    assert atenea.generate(llama, ids[:1], max_new_tokens=NEW).shape == (1, 9 + NEW)


def test_stop_strings_end_rows_in_text(gpt2):
    tokenizer = tiny.word_tokenizer()
    ids, mask = tiny.left_padded()
    free = atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    # The text of row 1's 4th and 5th new tokens, e.g. "w17 w90": a stop string over 2 tokens.
    stop = tokenizer.decode(free[1, 9 + 3 : 9 + 5])
    assert stop not in tokenizer.decode(free[0, 9:]) and stop not in tokenizer.decode(free[2, 9:])
    out = atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[],
                          stop_strings=[stop], tokenizer=tokenizer)  # fmt: skip
    assert torch.equal(out[1, : 9 + 5], free[1, : 9 + 5])
    assert (out[1, 9 + 5 :] == tiny.PAD).all()
    assert torch.equal(out[[0, 2]], free[[0, 2]])
    with pytest.raises(ValueError, match="tokenizer"):
        atenea.generate(gpt2, ids, attention_mask=mask, stop_strings=[stop])


def test_beam_scores_are_summed_log_probabilities_over_length_to_the_penalty(gpt2):
    ids, mask = tiny.left_padded()
    eos = int(atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=4)[0, -1])
    penalty = 0.7
    out = atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=NEW, num_beams=4,
                          eos_token_id=eos, length_penalty=penalty, return_beams=True)  # fmt: skip
    assert isinstance(out, BeamSearchOutput)
    assert out.beams.shape[:2] == (3, 4) and out.scores.shape == (3, 4)
    assert torch.equal(out.sequences, out.beams[:, 0, : out.sequences.shape[1]])
    assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()  # best first
    # Recompute each beam's score from the model: sum of log p over its new tokens.
    for row in range(3):
        for beam in range(4):
            new = int(out.lengths[row, beam])
            sequence = out.beams[row, beam, : 9 + new][None]
            full_mask = torch.cat([mask[row : row + 1], torch.ones(1, new, dtype=torch.long)], 1)
            with torch.no_grad():
                log_p = gpt2(sequence, full_mask).logits.log_softmax(-1)[0, 8:-1]
            total = log_p.gather(1, sequence[0, 9:, None]).sum()
            assert out.scores[row, beam] == pytest.approx(float(total) / new**penalty, abs=1e-4)


@pytest.mark.parametrize("model", ["gpt2", "seq2seq"])
def test_return_beams_without_new_tokens_is_still_a_beam_output(request, model):
    """``max_new_tokens=0`` takes no step: each of the K beams is the prompt (or the lone start
    token of an encoder-decoder), with no new tokens and a log-probability of 0."""
    net = request.getfixturevalue(model)
    ids, mask = tiny.left_padded()
    out = atenea.generate(net, ids, attention_mask=mask, max_new_tokens=0, num_beams=3,
                          return_beams=True)  # fmt: skip
    assert isinstance(out, BeamSearchOutput)
    plain = atenea.generate(net, ids, attention_mask=mask, max_new_tokens=0, num_beams=3)
    assert torch.equal(out.sequences, plain)
    assert torch.equal(out.beams, plain[:, None].expand(-1, 3, -1))
    assert out.scores.tolist() == [[0.0] * 3] * 3 and out.lengths.tolist() == [[0] * 3] * 3


def test_one_beam_is_greedy_and_beams_do_at_least_as_well(llama):
    ids, mask = tiny.left_padded()
    greedy = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    one = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[],
                          num_beams=1)  # fmt: skip
    assert torch.equal(one, greedy)
    beams = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[],
                            num_beams=4, return_beams=True)  # fmt: skip

    def log_prob(sequences):
        full_mask = torch.cat([mask, torch.ones(3, NEW, dtype=torch.long)], 1)
        with torch.no_grad():
            log_p = llama(sequences, full_mask).logits.log_softmax(-1)[:, 8:-1]
        return log_p.gather(2, sequences[:, 9:, None]).sum((1, 2))

    assert (log_prob(beams.sequences) >= log_prob(greedy) - 1e-4).all()


def test_encoder_decoder_generates_through_cross_attention_with_its_cache(seq2seq):
    source, _ = tiny.left_padded(seed=4)
    source_mask = torch.ones_like(source)
    source_mask[1, 6:] = 0  # a source may be padded on the right: the encoder only reads it
    calls = []
    encode = seq2seq.encode
    seq2seq.encode = lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs)
    try:
        kwargs = dict(attention_mask=source_mask, max_new_tokens=NEW, eos_token_id=[])
        cached = atenea.generate(seq2seq, source, **kwargs)
        assert len(calls) == 1  # the encoder runs once
    finally:
        del seq2seq.encode
    assert cached.shape == (3, 1 + NEW) and (cached[:, 0] == tiny.BOS).all()
    assert torch.equal(cached, atenea.generate(seq2seq, source, use_cache=False, **kwargs))
    beams = atenea.generate(seq2seq, source, num_beams=3, **kwargs)
    assert torch.equal(beams, atenea.generate(seq2seq, source, num_beams=3, use_cache=False,
                                              **kwargs))  # fmt: skip
    # The decoder reads the source: another source, another translation.
    other = atenea.generate(seq2seq, source.roll(1, dims=1), **kwargs)
    assert not torch.equal(other, cached)


def test_streamer_prints_the_continuation_as_it_comes(gpt2):
    tokenizer = tiny.word_tokenizer()
    ids, _ = tiny.left_padded()
    stream = io.StringIO()
    writes = []
    stream.write = lambda text: writes.append(text) or len(text)
    out = atenea.generate(gpt2, ids[:1], max_new_tokens=6, eos_token_id=[],
                          streamer=TextStreamer(tokenizer, stream=stream))  # fmt: skip
    assert "".join(writes) == tokenizer.decode(out[0, 9:]) + "\n"
    assert len(writes) == 7  # one piece per token, then the end of the line


def test_zero_new_tokens_returns_the_prompt(gpt2):
    ids, mask = tiny.left_padded()
    assert torch.equal(atenea.generate(gpt2, ids, attention_mask=mask, max_new_tokens=0), ids)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_the_compiled_decode_step_gives_the_same_tokens(request, model):
    model = request.getfixturevalue(model)
    ids, mask = tiny.left_padded()
    for num_beams, rows in ((1, slice(0, 1)), (1, slice(None)), (3, slice(None))):
        kwargs = dict(attention_mask=mask[rows], max_new_tokens=NEW, num_beams=num_beams)
        expected = atenea.generate(model, ids[rows], **kwargs)
        assert torch.equal(atenea.generate(model, ids[rows], compile=True, **kwargs), expected)


@pytest.mark.slow
def test_the_compiled_step_on_atenea_s_matvec_gives_the_same_tokens(
    gpt2, every_product_on_the_fast_kernels, monkeypatch
):
    # With the size threshold at 0 the compiled graph calls the atenea::matvec operator for
    # every float32 product of the step (batch 1).
    from atenea import _native

    torch._dynamo.reset()  # a graph traced under the default threshold would be reused
    ids, mask = tiny.left_padded()
    kwargs = dict(attention_mask=mask[:1], max_new_tokens=NEW)
    expected = atenea.generate(gpt2, ids[:1], **kwargs)
    calls, matvec = [], _native.matvec
    monkeypatch.setattr(_native, "matvec", lambda *args: calls.append(1) or matvec(*args))
    try:
        assert torch.equal(atenea.generate(gpt2, ids[:1], compile=True, **kwargs), expected)
    finally:
        torch._dynamo.reset()
    assert calls, "the compiled step never reached atenea's kernel: the test proves nothing"


def test_a_score_modifier_keeps_decoding_on_the_filled_part(gpt2):
    # ALiBi's bias depends on the query's position, which only the filled part of the cache
    # places right: a whole-cache step is refused, and compile=True decodes eagerly instead.
    from atenea import scores

    ids, mask = tiny.left_padded()
    heads = gpt2.layers[0].attention.num_heads
    try:
        for layer in gpt2.layers:
            layer.attention.score_mod = scores.alibi(heads)
        with pytest.raises(ValueError, match="new_cache: whole=True .* score modifier"):
            gpt2.new_cache(3, 16, whole=True)
        kwargs = dict(attention_mask=mask, max_new_tokens=4, eos_token_id=[])
        eager = atenea.generate(gpt2, ids, **kwargs)
        assert torch.equal(atenea.generate(gpt2, ids, compile=True, **kwargs), eager)
        assert torch.equal(atenea.generate(gpt2, ids, use_cache=False, **kwargs), eager)
    finally:
        for layer in gpt2.layers:
            layer.attention.score_mod = None


@pytest.mark.parametrize("every", [3, 5])  # the CPU's own default is 1: the reference
def test_checking_for_the_end_every_few_tokens_gives_the_same_output(llama, monkeypatch, every):
    """On a GPU the loop asks "is every row done?" every few tokens (a host sync each time) and
    trims afterwards; here the CPU is made to do the same: the output must not change."""
    from atenea.generation import sampling

    ids, mask = tiny.left_padded()
    free = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    ends = [int(free[row, 9 + step]) for row, step in ((0, 2), (1, 6), (2, 4))]
    expected = {
        pad: atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW,
                             eos_token_id=ends, pad_token_id=pad)
        for pad in (tiny.PAD, None)
    }  # fmt: skip
    assert expected[tiny.PAD].shape[1] < 9 + NEW, (
        "every row must end early for the test to mean anything"
    )
    monkeypatch.setitem(sampling.CHECK_EVERY, "cpu", every)
    for pad, reference in expected.items():
        got = atenea.generate(llama, ids, attention_mask=mask, max_new_tokens=NEW,
                              eos_token_id=ends, pad_token_id=pad)  # fmt: skip
        assert torch.equal(got, reference)
    assert atenea.generate(llama, ids, max_new_tokens=0).shape == ids.shape


def test_beam_steps_reorder_the_cache_in_place(llama):
    """A CUDA graph replays on fixed addresses: selecting rows must not move the buffers."""
    cache = llama.new_cache(4, 32, whole=True)
    for i, buffer in enumerate(cache.buffers()[:-1]):  # the last, the cursor, has no batch rows
        buffer.copy_(torch.arange(4).view(4, *[1] * (buffer.dim() - 1)).expand_as(buffer) + i)
    before = [t.data_ptr() for t in cache.buffers()]
    cache.select(torch.tensor([3, 3, 0, 1]))
    assert [t.data_ptr() for t in cache.buffers()] == before
    first = cache.layers[0].keys
    assert first[:, 0, 0, 0].tolist() == [3, 3, 0, 1]


@pytest.mark.parametrize(
    "before, after, text, ends",
    [
        ("w3 w7 w7", "w3 w7 w7 w7", "w7 w7", True),  # overlaps the one already there
        ("w3 w7 w7", "w3 w7 w7 w5", "w7 w7", False),  # only the old one: no new end
        ("w3 w7", "w3 w7 w7", "w7 w7", True),
        ("w3 w7 w7 w5", "w3 w7 w7 w5 w7", "w7 w7", False),
        ("caf\ufffd", "café", "fé", True),  # a byte completing a character changes the tail
        ("", "w7", "w7", True),
    ],
)
def test_a_stop_string_counts_when_it_ends_in_the_new_text(before, after, text, ends):
    from atenea.generation.stopping import _ends_in_new_text

    assert _ends_in_new_text(before, after, text) is ends


def test_stop_condition_sees_an_occurrence_overlapping_the_prompts():
    """The prompt ends with the stop string "w7 w7"; one more "w7" completes a new one, which
    ``str.count`` (not counting overlaps) missed."""
    from atenea.generation.config import GenerationConfig
    from atenea.generation.stopping import StopCondition

    model = SimpleNamespace(config=SimpleNamespace(eos_token_id=None, pad_token_id=tiny.PAD))
    s = GenerationConfig(stop_strings="w7 w7", tokenizer=tiny.word_tokenizer())
    stop = StopCondition(s.resolve(model, tiny.VOCAB, 3), torch.device("cpu"))
    rows = torch.tensor([[3, 7, 7, 7], [5, 3, 7, 7], [7, 7, 3, 5]])
    assert stop(rows).tolist() == [True, True, False]


def test_a_source_padded_on_either_side_encodes_and_translates_as_unpadded(seq2seq):
    """Source positions count from a row's first real token, so padding on the left shifts
    nothing (it moved every sinusoid by the padding's length)."""
    source = torch.tensor([[11, 52, 7, 90, 33]])
    pad, ones = torch.full((1, 3), tiny.PAD), torch.ones(1, 5, dtype=torch.long)
    left, left_mask = torch.cat([pad, source], 1), torch.cat([0 * pad, ones], 1)
    right, right_mask = torch.cat([source, pad], 1), torch.cat([ones, 0 * pad], 1)
    with torch.no_grad():
        alone = seq2seq.encode(source)
        torch.testing.assert_close(seq2seq.encode(left, left_mask)[:, 3:], alone)
        torch.testing.assert_close(seq2seq.encode(right, right_mask)[:, :5], alone)
    expected = atenea.generate(seq2seq, source, max_new_tokens=8)
    for ids, mask in ((left, left_mask), (right, right_mask)):
        assert torch.equal(atenea.generate(seq2seq, ids, attention_mask=mask, max_new_tokens=8),
                           expected)  # fmt: skip


def test_a_stop_string_a_byte_level_tokenizer_spells_in_many_tokens():
    """One token per byte: the emoji takes 4, more than the window of len("😀") + 2 tokens the
    condition decoded, so it never stopped (transformers does)."""
    from atenea.generation.config import GenerationConfig
    from atenea.generation.stopping import StopCondition
    from atenea.training.tokenizers import train_tokenizer

    bytes_only = train_tokenizer(["ok 😀 then"] * 3, kind="bpe", vocab_size=260)  # no merges
    ids = bytes_only.encode("ok 😀 then")
    assert len(ids) == len("ok 😀 then".encode())
    model = SimpleNamespace(config=SimpleNamespace(eos_token_id=None, pad_token_id=0))
    s = GenerationConfig(stop_strings="😀", tokenizer=bytes_only)
    stop = StopCondition(s.resolve(model, bytes_only.vocab_size, 1), torch.device("cpu"))
    ends = [bool(stop(torch.tensor([ids[:n]]))[0]) for n in range(1, len(ids) + 1)]
    assert ends.index(True) == len("ok 😀".encode()) - 1 and sum(ends) == 1
