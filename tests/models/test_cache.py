"""Incremental decoding with a KV cache gives what one full forward gives: a prefill of part
of the prompt, then chunks and single tokens, for GPT-2- and Llama-style decoders (also with
a left-padded batch), and for the encoder-decoder with its cross-attention memory cached."""

import pytest
import torch

from atenea.models import DecoderConfig, DecoderModel, EncoderDecoderConfig, EncoderDecoderModel
from tests.helpers import max_error
from tests.models.tiny import LENGTH, VOCAB, padded_batch, randomize

STEPS = [5, 2, 1, 1, 1, 1]  # prefill 5 tokens, a chunk of 2, then one at a time
assert sum(STEPS) == LENGTH


def decoder(name):
    config = DecoderConfig.from_name(name, vocab_size=VOCAB)
    if name == "llama-tiny":  # a head_dim of its own and grouped-query attention
        config = DecoderConfig.from_name(name, vocab_size=VOCAB, num_heads=4, num_kv_heads=2)
    return randomize(DecoderModel(config)).eval()


def decode_in_steps(model, ids, mask, capacity=LENGTH + 3):
    cache = model.new_cache(ids.shape[0], capacity)
    logits, start = [], 0
    for step in STEPS:
        chunk = slice(start, start + step)
        out = model(ids[:, chunk], None if mask is None else mask[:, chunk], cache=cache)
        logits.append(out.logits)
        start += step
    assert cache.length == LENGTH
    return torch.cat(logits, 1), cache


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("padding", ["none", "left"])
@torch.no_grad()
def test_cached_decoding_equals_full_forward(name, padding):
    model = decoder(name)
    if padding == "none":
        ids, mask = padded_batch("left", lengths=(LENGTH, LENGTH))
        mask_or_none = None
    else:
        # the second row's prefill is padding only: its first real token comes in step 3
        ids, mask = padded_batch("left", lengths=(LENGTH, 4))
        mask_or_none = mask
    full = model(ids, mask_or_none).logits
    stepped, cache = decode_in_steps(model, ids, mask_or_none)
    real = mask.bool()
    assert stepped.shape == full.shape == (2, LENGTH, VOCAB)
    assert max_error(stepped[real], full[real]) < 1e-5
    assert cache.next_position.tolist() == mask.sum(-1).tolist()
    # the cache really holds the past: decoding the last token without it gives other logits
    alone = model(ids[:, -1:]).logits
    assert max_error(alone[:, 0], full[:, -1]) > 1e-2


@torch.no_grad()
def test_cache_select_follows_reordered_rows():
    model = decoder("llama-tiny")
    ids, mask = padded_batch("left", lengths=(LENGTH, 8))
    cache = model.new_cache(2, LENGTH)
    model(ids[:, :6], mask[:, :6], cache=cache)
    cache.select(torch.tensor([1, 0]))  # beam search reorders its rows
    flipped_ids, flipped_mask = ids.flip(0), mask.flip(0)
    rest = model(flipped_ids[:, 6:], flipped_mask[:, 6:], cache=cache).logits
    full = model(flipped_ids, flipped_mask).logits
    assert max_error(rest, full[:, 6:]) < 1e-5


@torch.no_grad()
def test_cache_capacity_is_enforced():
    model = decoder("gpt2-tiny")
    cache = model.new_cache(1, 4)
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    with pytest.raises(ValueError, match="cache: 5 positions needed but the cache holds 4"):
        model(torch.tensor([[4, 5]]), cache=cache)


@torch.no_grad()
def test_a_whole_cache_refuses_a_step_past_its_end():
    # One-token steps over a whole cache write at the device cursor; past the end that was an
    # IndexError from inside the cache (and, on CUDA, a device assert).
    model = decoder("gpt2-tiny")
    cache = model.new_cache(1, 4, whole=True)
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    model(torch.tensor([[4]]), cache=cache)  # the fourth slot: room for it
    with pytest.raises(ValueError, match="cache: 5 positions needed but the cache holds 4"):
        model(torch.tensor([[5]]), cache=cache)
    assert cache.length == 4  # nothing written, nothing moved


@pytest.mark.parametrize("norm_position", ["post", "pre"])
@torch.no_grad()
def test_encoder_decoder_cached_decoding_equals_uncached(norm_position):
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny",
        src_vocab_size=VOCAB,
        tgt_vocab_size=89,
        dim=48,
        num_heads=6,
        norm_position=norm_position,
    )
    model = randomize(EncoderDecoderModel(config)).eval()
    generator = torch.Generator().manual_seed(3)
    src = torch.randint(3, VOCAB, (2, 9), generator=generator)
    src_mask = torch.ones_like(src)
    src_mask[1, 6:] = 0  # source padded on the right
    tgt = torch.randint(3, 89, (2, 7), generator=generator)
    memory = model.encode(src, src_mask)
    expected, _ = model.decode(tgt, memory, src_mask)
    forward = model(src, tgt, src_mask).logits
    assert max_error(forward, expected) < 1e-6

    cache = model.new_cache(2, 7)
    steps, start = [], 0
    for step in (3, 1, 1, 1, 1):
        logits, _ = model.decode(tgt[:, start : start + step], memory, src_mask, cache=cache)
        steps.append(logits)
        start += step
        assert all(layer.keys.shape[2] == 9 for layer in cache.cross)  # memory projected once
    stepped = torch.cat(steps, 1)
    assert stepped.shape == (2, 7, 89)
    assert max_error(stepped, expected) < 1e-5
    # the cross-attention keys come from the cache: the memory argument is not read again
    cache = model.new_cache(2, 7)
    model.decode(tgt[:, :3], memory, src_mask, cache=cache)
    later, _ = model.decode(tgt[:, 3:4], torch.zeros_like(memory), src_mask, cache=cache)
    assert max_error(later, expected[:, 3:4]) < 1e-5
    # while without a cache the memory matters
    other, _ = model.decode(tgt, torch.zeros_like(memory), src_mask)
    assert max_error(other, expected) > 1e-2
