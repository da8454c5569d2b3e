"""Tiny models with random weights for generation tests, saved and loaded the way users do.

Hugging Face initialises weights with std 0.02: the logits of such a model are nearly flat, so
greedy decoding repeats one token and a near-tie could decide a comparison. ``spread`` gives
every weight a larger spread: varied continuations, and logit gaps far above float32 noise.
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, pre_tokenizers

import atenea
from atenea.models import EncoderDecoderConfig, EncoderDecoderModel, Tokenizer

VOCAB = 211  # prime, and different from every other size
# The special tokens sit at the top of the vocabulary; PAD is not 0 on purpose (Hugging Face's
# beam search fills with the end token when pad_token_id == 0).
PAD, BOS, EOS = VOCAB - 1, VOCAB - 2, VOCAB - 3
WORDS = VOCAB - 3  # ids 0 .. WORDS - 1 are words


@torch.no_grad()
def spread(model: torch.nn.Module, seed: int = 0, gain: float = 1.3) -> torch.nn.Module:
    """Matrices ~ N(0, gain^2 / fan_in), norm scales ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator)
        if p.dim() >= 2:
            p.copy_(noise * gain / p.shape[-1] ** 0.5)
        else:
            p.copy_(1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
    return model


def hf_gpt2() -> transformers.GPT2LMHeadModel:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=4, n_positions=64,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    return spread(transformers.GPT2LMHeadModel(config), seed=1, gain=3.0).eval()


def hf_llama() -> transformers.LlamaForCausalLM:
    """Grouped-query attention: 6 query heads share 2 key/value heads."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    return spread(transformers.LlamaForCausalLM(config), seed=1).eval()


def word_tokenizer() -> Tokenizer:
    """A word-level tokenizer over VOCAB ids: the words ``w0 .. w207``, then the specials.
    Decoding joins words with spaces, so ``decode([5, 6]) == "w5 w6"``."""
    vocab = {f"w{i}": i for i in range(WORDS)}
    vocab.update({"[PAD]": PAD, "[BOS]": BOS, "[EOS]": EOS})
    backend = BackendTokenizer(models.WordLevel(vocab, unk_token="[PAD]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(["[PAD]", "[BOS]", "[EOS]"])
    special = {"pad": "[PAD]", "bos": "[BOS]", "eos": "[EOS]"}
    return Tokenizer(backend, special, padding_side="left")


def saved(hf_model, folder, tokenizer: Tokenizer | None = None):
    """Save a Hugging Face model (and tokenizer) and load it back with atenea."""
    hf_model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save(folder)
    model, _ = atenea.load_pretrained(folder)
    return model


def seq2seq() -> EncoderDecoderModel:
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny", src_vocab_size=VOCAB + 17, tgt_vocab_size=VOCAB, dim=48,
        num_heads=4, ffn_hidden=80, max_positions=40, dropout=0.0,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )  # fmt: skip
    return spread(EncoderDecoderModel(config), seed=2).eval()


def left_padded(batch_lengths=(9, 6, 3), seed: int = 0):
    """``input_ids (3, 9)`` with rows of 9, 6 and 3 real tokens, left-padded with PAD."""
    generator = torch.Generator().manual_seed(seed)
    length = max(batch_lengths)
    ids = torch.randint(0, WORDS, (len(batch_lengths), length), generator=generator)
    mask = torch.zeros_like(ids)
    for row, real in enumerate(batch_lengths):
        mask[row, length - real :] = 1
    return ids.masked_fill(mask == 0, PAD), mask
