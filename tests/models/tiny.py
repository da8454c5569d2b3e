"""Tiny Hugging Face models with random weights large enough to matter, for parity tests.

Hugging Face initialises with std 0.02: at that scale the attention is nearly uniform and a
wrong rotation or a transposed head would hide below any tolerance. ``randomize`` gives every
weight a spread that makes each piece of the computation visible in the output.
"""

from __future__ import annotations

import torch
import transformers

# Every size different, so a transposed axis cannot go unnoticed.
VOCAB = 97
BATCH, LENGTH = 2, 11


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, gain: float = 1.5) -> torch.nn.Module:
    """Matrices ~ N(0, gain^2 / fan_in); 1-D weights (norm scales) ~ 1 + N(0, 0.2^2); biases
    ~ N(0, 0.1^2). Tied parameters are visited once (``named_parameters`` de-duplicates)."""
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        if p.dim() >= 2:
            value = noise * gain / p.shape[-1] ** 0.5
        elif name.endswith("weight"):
            value = 1 + 0.2 * noise
        else:
            value = 0.1 * noise
        p.copy_(value.to(p.dtype))
    return model


def bert_config(**overrides) -> transformers.BertConfig:
    values = dict(
        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
        intermediate_size=40, max_position_embeddings=32, type_vocab_size=2,
        attn_implementation="eager",
    )  # fmt: skip
    return transformers.BertConfig(**{**values, **overrides})


def gpt2_config(**overrides) -> transformers.GPT2Config:
    values = dict(
        vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=6, n_positions=32,
        bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, attn_implementation="eager",
    )  # fmt: skip
    return transformers.GPT2Config(**{**values, **overrides})


LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
}  # fmt: skip


def llama_config(**overrides) -> transformers.LlamaConfig:
    values = dict(
        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, intermediate_size=40, max_position_embeddings=64,
        attn_implementation="eager",
    )  # fmt: skip
    return transformers.LlamaConfig(**{**values, **overrides})


def padded_batch(side: str, seed: int = 0, lengths=(LENGTH, 7)):
    """``input_ids (2, 11)`` and an ``attention_mask`` padding the second row to 7 tokens on
    ``side``; padding ids are real vocabulary ids (0) so only the mask can hide them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), LENGTH), generator=generator)
    mask = torch.zeros(len(lengths), LENGTH, dtype=torch.long)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, LENGTH - length :] = 1
    return ids.masked_fill(mask == 0, 0), mask


def hf_positions(mask: torch.Tensor) -> torch.Tensor:
    """What Hugging Face's generate gives a left-padded decoder: each row counts from 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
