"""``atenea generate``: continue a prompt with a saved model, printing the text as it comes.

    atenea generate --model PATH --prompt "Once upon a time" --max-new-tokens 40
    atenea generate --model PATH --prompt "..." --temperature 0.8 --top-p 0.95 --seed 1
    atenea generate --model PATH --prompt "..." --num-beams 4

Greedy by default; ``--temperature``, ``--top-k`` or ``--top-p`` switch to sampling (seeded by
``--seed``, so a command repeats its output). Beam search prints the best beam at the end.
"""

from __future__ import annotations

import sys

from atenea.cli.errors import USER_ERRORS, fail


def add_parser(subparsers) -> None:
    """Add the ``generate`` subcommand to the ``atenea`` parser."""
    parser = subparsers.add_parser(
        "generate",
        help="continue a prompt with a saved model, streaming the text",
        description="Continue a prompt with a model folder (config.json, model.safetensors, "
        "tokenizer.json) and print the continuation as it is generated.",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (Hugging Face style)")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="default 50")
    parser.add_argument("--temperature", type=float, help="sample at this temperature (> 0)")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample from the nucleus of mass p in (0, 1]")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search with K beams")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    parser.set_defaults(run=run)


def _check(args) -> None:
    """The flags, before the model is read."""
    if not args.prompt.strip():
        raise ValueError("--prompt: the prompt is empty; give some text to continue")
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens: expected an integer >= 0, got {args.max_new_tokens}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p: expected a number in (0, 1], got {args.top_p}")
    if args.temperature is not None and not args.temperature > 0:
        raise ValueError(f"--temperature: expected a number > 0, got {args.temperature}")
    if args.num_beams < 1:
        raise ValueError(f"--num-beams: expected an integer >= 1, got {args.num_beams}")


def run(args) -> int:
    try:
        _check(args)
        return _generate(args)
    except USER_ERRORS as error:
        return fail("generate", error)
    except KeyboardInterrupt:  # Ctrl-C while the text streams: stop quietly
        print(file=sys.stderr)
        return 130


def _generate(args) -> int:
    import torch

    import atenea
    from atenea.generation import TextStreamer
    from atenea.models import DecoderModel

    model, tokenizer = atenea.load_pretrained(args.model)
    if tokenizer is None:
        raise ValueError(f"--model: {args.model} has no tokenizer.json; it is needed for text")
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("--prompt: the tokenizer turned the prompt into no tokens")
    input_ids = torch.tensor([ids])
    sampling = any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    beams = args.num_beams > 1
    streamer = None if beams else TextStreamer(tokenizer, skip_prompt=True)
    out = atenea.generate(
        model, input_ids,
        max_new_tokens=args.max_new_tokens, do_sample=sampling,
        temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p,
        num_beams=args.num_beams, streamer=streamer,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    if beams:
        # The continuation: after the prompt (decoder) or after the start token (seq2seq).
        start = input_ids.shape[1] if isinstance(model, DecoderModel) else 1
        print(tokenizer.decode(out[0, start:]), flush=True)
    return 0
