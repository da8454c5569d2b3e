"""``atenea explain --image PATH --model FOLDER``: what a Vision Transformer looks at in a
picture -- the predicted class, the attention rollout from [CLS] and each head's [CLS]
attention drawn over the image (PNG, and an HTML page where hovering a patch shows where it
attends), and which heads look at neighbouring patches and which at far ones.

    atenea train images --out runs/fashion
    atenea explain --image shoe.png --model runs/fashion
    atenea convert onnx vit_s_focus.onnx --out runs/vit-s
    atenea explain --image photo.jpg --model runs/vit-s --png pictures/
"""

from __future__ import annotations

from pathlib import Path

import torch

from atenea.inspect.tokens import ExplainError

DEFAULT_PNG = "attention_image"


def run_image(args, device) -> int:
    """The ``--image`` branch of ``atenea explain`` (errors are ExplainError / CheckpointError /
    DataError, which ``explain.run`` prints as one line)."""
    from atenea.cli.errors import with_article
    from atenea.cli.outputs import check_picture_output
    from atenea.inspect.image_report import image_report_data, render_image_html
    from atenea.inspect.images import explain_image, head_lines, heads_png, rollout_png
    from atenea.models import ViTForImageClassification, ViTModel, load_pretrained
    from atenea.training.datasets.images import read_image

    for flag, value in (("--focus", args.focus), ("--compare", args.compare),
                        ("--pair", args.pair), ("--target", args.target),
                        ("--layer", args.layer), ("--head", args.head),
                        ("--max-tokens", args.max_tokens)):  # fmt: skip
        if value is not None:
            raise ExplainError(f"{flag} is for texts, not for --image")
    folder = Path(args.png or DEFAULT_PNG)
    try:  # before the model runs: a PNG atenea did not draw is not replaced (cli/outputs.py)
        check_picture_output([folder / "rollout.png", folder / "heads.png"], "--png",
                             args.overwrite)  # fmt: skip
    except ValueError as error:
        raise ExplainError(str(error)) from None
    model, _ = load_pretrained(args.model)
    if not isinstance(model, (ViTModel, ViTForImageClassification)):
        kind = with_article(type(model).__name__)
        raise ExplainError(f"--image: {args.model} is {kind}, not a vision model (train one "
                           f"with atenea train images)")  # fmt: skip
    model.to(device)
    pixels = read_image(args.image, channels=model.config.num_channels)
    image = torch.from_numpy(pixels).float() / 255
    e = explain_image(model, image)
    c = model.config
    layers, heads = e.maps.shape[:2]
    print(f"atenea explain: {args.model} ({type(model).__name__}, {layers} layers x {heads} heads, "
          f"{e.grid[0]}x{e.grid[1]} patches of {c.patch_size} pixels)")  # fmt: skip
    print(f"image: {args.image} ({pixels.shape[2]}x{pixels.shape[1]}, read at "
          f"{c.image_size}x{c.image_size})")  # fmt: skip
    if e.top:
        print("prediction: " + ", ".join(f"{label} {p:.1%}" for label, p in e.top))
    else:
        print("prediction: none (an encoder without a classifier head)")
    strongest = torch.topk(e.rollout.flatten(), min(3, e.rollout.numel()))
    spots = [f"row {int(i) // e.grid[1]} col {int(i) % e.grid[1]} ({float(v):.1%})"
             for v, i in zip(*strongest)]  # fmt: skip
    print(f"rollout from [CLS]: draws most on the patches at {', '.join(spots)}")
    print(f"heads by mean distance to the patches they attend to (in patches; uniform "
          f"attention: {e.baseline:.1f}):")  # fmt: skip
    for line in head_lines(e):
        print(f"  {line}")
    name = Path(args.image).name
    try:
        written = [
            rollout_png(e, folder / "rollout.png", f"{name}: {args.model}"),
            heads_png(e, folder / "heads.png", f"[CLS] attention of every head: {name}"),
        ]
    except ImportError as error:
        raise ExplainError(f"--png: {error}") from None
    except OSError as error:
        raise ExplainError(f"cannot write the pictures to {folder}: {error}") from None
    print("pictures: " + ", ".join(str(p) for p in written))
    out = Path(args.out)  # checked by explain._run: a file atenea may write
    data = image_report_data(e, f"{name}: {args.model}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_image_html(data), encoding="utf-8")
    except OSError as error:
        raise ExplainError(f"cannot write the report to {out}: {error.strerror or error}") from None
    print(f"report: {out.resolve()}  (open it in a browser; hover the patches)")
    return 0
