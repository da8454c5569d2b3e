"""``atenea.generate``: greedy decoding, sampling and beam search, with a KV cache."""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.generation.beam import BeamSearchOutput, beam_search
from atenea.generation.config import GenerationConfig
from atenea.generation.decoding import start
from atenea.generation.sampling import sample
from atenea.models.common import check_ids
from atenea.models.decoder import DecoderModel
from atenea.models.encoder_decoder import EncoderDecoderModel
from atenea.models.rnn import RNNTranslator

# Models that read a source and write a target: ``encode`` once, then ``decode`` on a cache
# (``new_cache``) whose ``select(rows)`` beam search calls. RNNSearch / RNNEncDec's cache is
# their decoder state (``RNNState``).
SEQ2SEQ = (EncoderDecoderModel, RNNTranslator)


def generate(
    model,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
    config: GenerationConfig | None = None,
    **options,
):
    """Continue ``input_ids`` with up to ``max_new_tokens`` tokens.

    Args:
        model: an ``atenea.models.DecoderModel`` (GPT-2, Llama), ``EncoderDecoderModel``,
            ``RNNSearch`` or ``RNNEncDec``.
        input_ids: ``(B, L)`` token ids. Decoder: the prompt, left-padded in a batch.
            Encoder-decoder: the *source*; the encoder reads it once and the decoder starts
            from ``model.config.bos_token_id``.
        attention_mask: ``(B, L)``, 1 for tokens, 0 for (left) padding.
        config: a ``GenerationConfig`` (default: its defaults).
        **options: any field of ``GenerationConfig``, named and meaning as in Hugging Face's
            ``generate``: ``max_new_tokens`` (20), ``do_sample``, ``temperature``, ``top_k``,
            ``top_p``, ``min_p``, ``repetition_penalty``, ``num_beams``, ``length_penalty``,
            ``early_stopping``, ``eos_token_id``, ``pad_token_id``, ``stop_strings``,
            ``tokenizer``, ``streamer``, ``generator``, ``use_cache``, ``return_beams``,
            ``compile``. They override ``config``.

    Returns:
        ``(B, L + new)`` token ids: the prompt followed by the new tokens (encoder-decoder:
        ``(B, 1 + new)``, starting with the BOS token). ``new <= max_new_tokens``: generation
        stops early when every row has ended. With ``num_beams > 1`` and ``return_beams``, a
        ``BeamSearchOutput``.
    """
    check_inputs(model, input_ids, attention_mask)
    s = GenerationConfig.of(config, **options)
    s = s.resolve(model, vocab_size_of(model), batch=input_ids.shape[0])
    check_lengths(model, input_ids, s.max_new_tokens)
    with torch.no_grad():
        decoding, prompt, prompt_mask = start(model, input_ids, attention_mask, s)
        if s.num_beams > 1 and s.max_new_tokens > 0:
            return beam_search(decoding, prompt, prompt_mask, s)
        out = sample(decoding, prompt, prompt_mask, s)
    if s.num_beams > 1 and s.return_beams:  # no new token: each of the K beams is the prompt
        batch, k = out.shape[0], s.num_beams
        return BeamSearchOutput(
            sequences=out, beams=out[:, None].expand(-1, k, -1).clone(),
            scores=out.new_zeros(batch, k, dtype=torch.float32),  # log 1: nothing was chosen
            lengths=out.new_zeros(batch, k),
        )  # fmt: skip
    return out


def vocab_size_of(model) -> int:
    """The vocabulary of the tokens ``model`` generates."""
    c = model.config
    return c.vocab_size if isinstance(model, DecoderModel) else c.tgt_vocab_size


def check_inputs(model, input_ids, attention_mask) -> None:
    """``input_ids (B, L)`` with L >= 1; ``attention_mask (B, L)`` with a real token in every
    row, left-padded for a decoder (its real tokens at the end; a source may be padded on
    either side)."""
    if not isinstance(model, (DecoderModel, *SEQ2SEQ)):
        raise TypeError(
            f"model: expected an atenea DecoderModel, EncoderDecoderModel, RNNSearch or "
            f"RNNEncDec, got {type(model).__name__}"
        )
    source_vocab = (
        model.config.vocab_size if isinstance(model, DecoderModel) else model.config.src_vocab_size
    )
    check_ids(input_ids, source_vocab)  # a (B, L) tensor of known ids
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids: the prompt is empty (shape {tuple(input_ids.shape)}); give at least one "
            f"token per row"
        )
    if attention_mask is None:
        return
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask: expected the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    real = attention_mask.bool()
    if not bool(real.any(dim=1).all()):
        raise ValueError("attention_mask: a row has no real token (all 0)")
    if isinstance(model, SEQ2SEQ):
        return  # the encoder reads the source with any padding
    if not bool(real[:, -1].all()):
        raise ValueError(
            "attention_mask: every row must end with a real token (generation needs left "
            "padding: pad on the left, as Tokenizer(padding_side='left') does)"
        )
    # Left padding: once a row's real tokens start, they do not stop.
    if bool((real[:, :-1] & ~real[:, 1:]).any()):
        raise ValueError("attention_mask: padding must all be on the left of each row (0s then 1s)")


def check_lengths(model, input_ids: Tensor, max_new_tokens: int) -> None:
    """The prompt (decoder) or the output (encoder-decoder) must fit the model's positions."""
    limit = getattr(model.config, "max_positions", None)
    if limit is None:
        return  # a recurrent model has no positions to run out of
    length = input_ids.shape[1]
    if length > limit:
        raise ValueError(
            f"input_ids: the prompt has {length} tokens but the model takes at most {limit} "
            f"positions (max_positions); shorten it"
        )
    generated = length if isinstance(model, DecoderModel) else 1  # encoder-decoder: BOS + new
    if generated + max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens: {generated} + {max_new_tokens} new tokens exceed the model's "
            f"{limit} positions (max_positions); ask for at most {limit - generated}"
        )
