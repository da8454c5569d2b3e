"""``atenea generate``: continue a prompt with a saved model, printing the text as it comes.

    atenea generate --model PATH --prompt "Once upon a time" --max-new-tokens 40
    atenea generate --model PATH --prompt "..." --temperature 0.8 --top-p 0.95 --seed 1
    atenea generate --model PATH --prompt "..." --num-beams 4

Greedy by default; ``--temperature``, ``--top-k`` or ``--top-p`` switch to sampling (seeded by
``--seed``, so a command repeats its output). Beam search prints the best beam at the end.
"""

from __future__ import annotations

import sys

from atenea.cli.devices import add_device_arguments, device_of
from atenea.cli.errors import GENERATE_FLAGS, USER_ERRORS, check_utf8, fail


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
    add_device_arguments(parser)
    parser.set_defaults(run=run)


def _options(args):
    """The flags as a ``GenerationConfig``, checked before the model is read (a bad value is
    the library's message, shown with the flag's name)."""
    import torch

    from atenea.generation import GenerationConfig

    check_utf8("--prompt", args.prompt)
    if not args.prompt.strip():
        raise ValueError("--prompt: the prompt is empty; give some text to continue")
    sampling = any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    return GenerationConfig.of(
        max_new_tokens=args.max_new_tokens, do_sample=sampling,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams,
        generator=torch.Generator().manual_seed(args.seed),
    ).check()  # fmt: skip


def run(args) -> int:
    try:
        return _generate(args, _options(args))
    except USER_ERRORS as error:
        return fail("generate", error, flags=GENERATE_FLAGS)
    except KeyboardInterrupt:  # Ctrl-C while the text streams: stop quietly
        print(file=sys.stderr)
        return 130


def _generate(args, config) -> int:
    import torch

    import atenea
    from atenea.cli.errors import with_article
    from atenea.cli.outputs import check_finished
    from atenea.generation import TextStreamer
    from atenea.generation.generate import SEQ2SEQ
    from atenea.models import DecoderModel

    device = device_of(args)  # a device that is not there: said before anything is read
    check_finished(args.model)  # an interrupted run says so, and how to go on
    model, tokenizer = atenea.load_pretrained(args.model)
    if not isinstance(model, (DecoderModel, *SEQ2SEQ)):  # an encoder or an image model
        raise ValueError(
            f"--model: {args.model} is {with_article(type(model).__name__)}, which generates no "
            f"text; give a decoder (gpt2, a run of atenea train lm) or a translator"
        )
    if tokenizer is None:
        raise ValueError(f"--model: {args.model} has no tokenizer.json; it is needed for text")
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("--prompt: the tokenizer turned the prompt into no tokens")
    model.to(device)
    input_ids = torch.tensor([ids], device=device)
    beams = config.num_beams > 1
    streamer = None if beams else TextStreamer(tokenizer, skip_prompt=True)
    out = atenea.generate(model, input_ids, config=config, streamer=streamer)
    if beams:
        # The continuation: after the prompt (decoder) or after the start token (seq2seq).
        start = input_ids.shape[1] if isinstance(model, DecoderModel) else 1
        print(tokenizer.decode(out[0, start:]), flush=True)
    return 0
