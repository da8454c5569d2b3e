"""``atenea.generate``: greedy decoding, sampling and beam search, with a KV cache."""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.generation import settings as checks
from atenea.generation.beam import beam_search
from atenea.generation.decoding import start
from atenea.generation.sampling import sample


def generate(
    model,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = True,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    stop_strings: str | list[str] | None = None,
    tokenizer=None,
    streamer=None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    return_beams: bool = False,
    compile: bool = False,
):
    """Continue ``input_ids`` with up to ``max_new_tokens`` tokens. Arguments are named as in
    Hugging Face's ``generate`` and mean the same.

    Args:
        model: an ``atenea.models.DecoderModel`` (GPT-2, Llama) or ``EncoderDecoderModel``.
        input_ids: ``(B, L)`` token ids. Decoder: the prompt, left-padded in a batch.
            Encoder-decoder: the *source*; the encoder reads it once and the decoder starts
            from ``model.config.bos_token_id``.
        attention_mask: ``(B, L)``, 1 for tokens, 0 for (left) padding.
        max_new_tokens: new tokens at most (0: ``input_ids`` back).
        do_sample: draw each token from the distribution instead of taking the argmax;
            ``temperature`` (> 0), ``top_k``, ``top_p`` (in (0, 1]) and ``min_p`` shape it
            (applied in that order, sampling only). ``top_k=1`` is greedy.
        repetition_penalty: > 1 discourages tokens already in the row (prompt included).
        num_beams: > 1 for beam search; a beam's score is its summed log-probability over
            ``new_tokens ** length_penalty``. ``early_stopping``: True stops a row once it has
            ``num_beams`` finished beams; False / ``"never"`` keep going while a running beam
            could still do better (Hugging Face's heuristics).
        eos_token_id: token id(s) that end a row (default: the model config's; ``[]``: none).
        pad_token_id: fills rows that ended while others go on (default: the config's, else
            the first ``eos_token_id``).
        stop_strings: text that ends a row once generated (needs ``tokenizer``).
        streamer: receives the tokens as they come (``put`` / ``end``, e.g. ``TextStreamer``);
            batch size 1, no beam search.
        generator: the random source of sampling (default: the global one, ``torch.manual_seed``).
        use_cache: False runs the whole sequence at every step (slow; the reference).
        return_beams: with ``num_beams > 1``, return a ``BeamSearchOutput`` (all beams and
            their scores) instead of the best sequences.
        compile: run the decode step of a decoder model through ``torch.compile`` with frozen
            weights (the first call compiles, for tens of seconds on a CPU, and again for new
            shapes; later calls reuse it). Much faster on a CPU (see benchmarks/generation.py);
            the prepacked weights take memory besides the model's, and a model changed
            afterwards needs ``torch._dynamo.reset()``.

    Returns:
        ``(B, L + new)`` token ids: the prompt followed by the new tokens (encoder-decoder:
        ``(B, 1 + new)``, starting with the BOS token). ``new <= max_new_tokens``: generation
        stops early when every row has ended.
    """
    s = checks.resolve(
        model, input_ids, attention_mask,
        max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, stop_strings=stop_strings,
        tokenizer=tokenizer, streamer=streamer, generator=generator, use_cache=use_cache,
        return_beams=return_beams, compile=compile,
    )  # fmt: skip
    with torch.no_grad():
        decoding, prompt, prompt_mask = start(
            model, input_ids, attention_mask, s.max_new_tokens, s.use_cache, s.compile
        )
        if s.num_beams > 1 and s.max_new_tokens > 0:
            return beam_search(decoding, prompt, prompt_mask, s)
        return sample(decoding, prompt, prompt_mask, s)
