"""Graph analysis: MACs, bytes and DPU support of ONNX nodes, checked against hand counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tuner.costmodels.graph.analyze import analyze_graph
from tuner.errors import TunerError

OPSET = 18


def _model(nodes, inputs, outputs, weights=None, input_dims=None) -> onnx.ModelProto:
    """A float model; `inputs` maps name -> dims (ints or symbolic names)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in (weights or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _by_op(layers, op_type):
    return [layer for layer in layers if layer.op_type == op_type]


def test_conv_macs_bytes_and_geometry() -> None:
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    model = _model([conv], {"x": ["N", 16, 32, 32]}, ["y"], {"w": _w(32, 16, 3, 3), "b": _w(32)})
    (layer,) = analyze_graph(model, {"x": [1, 16, 32, 32]})
    assert layer.kind == "conv" and layer.dpu_supported
    assert layer.macs == 32 * 32 * 32 * 16 * 3 * 3  # C_out * H_out * W_out * C_in * kh * kw
    assert layer.weight_bytes == 32 * 16 * 9 + 32
    assert (layer.input_bytes, layer.output_bytes) == (16 * 32 * 32, 32 * 32 * 32)
    assert (layer.c_in, layer.c_out, layer.h_out, layer.w_out) == (16, 32, 32, 32)
    assert (layer.kernel_h, layer.kernel_w, layer.groups) == (3, 3, 1)
    assert layer.graph_input_bytes == 16 * 32 * 32 and layer.graph_output_bytes == 32 * 32 * 32


def test_strided_rectangular_conv() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[0, 1, 0, 1])
    model = _model([conv], {"x": [1, 8, 20, 20]}, ["y"], {"w": _w(24, 8, 1, 3)})
    (layer,) = analyze_graph(model, {"x": [1, 8, 20, 20]})
    assert (layer.h_out, layer.w_out) == (10, 10)
    assert layer.macs == 24 * 10 * 10 * 8 * 1 * 3
    assert (layer.kernel_h, layer.kernel_w) == (1, 3)


def test_depthwise_and_grouped_convs() -> None:
    dw = helper.make_node("Conv", ["x", "wd"], ["d"], group=16, pads=[1, 1, 1, 1])
    gc = helper.make_node("Conv", ["d", "wg"], ["y"], group=4)
    model = _model(
        [dw, gc], {"x": [1, 16, 32, 32]}, ["y"], {"wd": _w(16, 1, 3, 3), "wg": _w(32, 4, 1, 1)}
    )
    depthwise, grouped = analyze_graph(model, {"x": [1, 16, 32, 32]})
    assert depthwise.kind == "depthwise" and depthwise.groups == 16
    assert depthwise.macs == 16 * 32 * 32 * 9
    assert depthwise.weight_bytes == 16 * 9
    assert grouped.kind == "conv" and grouped.groups == 4
    assert grouped.macs == 32 * 32 * 32 * (16 // 4)


def test_gemm_and_matmul() -> None:
    gemm = helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1)
    mm = helper.make_node("MatMul", ["g", "w2"], ["y"])
    model = _model(
        [gemm, mm], {"x": [1, 512]}, ["y"], {"w": _w(1000, 512), "b": _w(1000), "w2": _w(1000, 10)}
    )
    fc, matmul = analyze_graph(model, {"x": [1, 512]})
    assert fc.kind == "gemm" and fc.macs == 512 * 1000
    assert fc.weight_bytes == 512 * 1000 + 1000
    assert (fc.c_in, fc.c_out, fc.w_out) == (512, 1000, 1)
    assert matmul.macs == 1000 * 10 and matmul.dpu_supported


def test_matmul_of_two_activations_runs_on_host() -> None:
    mm = helper.make_node("MatMul", ["q", "k"], ["y"])
    model = _model([mm], {"q": [1, 4, 64, 32], "k": [1, 4, 32, 64]}, ["y"])
    (layer,) = analyze_graph(model, {"q": [1, 4, 64, 32], "k": [1, 4, 32, 64]})
    assert layer.kind == "gemm" and not layer.dpu_supported
    assert layer.macs == 4 * 64 * 64 * 32 and layer.weight_bytes == 0


def test_pools_eltwise_free_and_host_ops() -> None:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["p", "p"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"]),
    ]
    model = _model(nodes, {"x": [1, 8, 16, 16]}, ["y"])
    pool, add, relu, gap, flat, soft = analyze_graph(model, {"x": [1, 8, 16, 16]})
    assert pool.kind == "pool" and pool.macs == 8 * 8 * 8 * 9
    assert add.kind == "eltwise" and add.macs == 8 * 8 * 8 and add.input_bytes == 2 * 512
    assert relu.kind == "eltwise" and relu.dpu_supported
    assert gap.kind == "pool" and gap.macs == 8 * 8 * 8 and gap.output_bytes == 8
    assert flat.kind == "other" and flat.macs == 0 and flat.dpu_supported
    assert soft.kind == "other" and not soft.dpu_supported and soft.input_bytes == 8


def test_reduce_mean_is_a_pool_only_over_spatial_axes() -> None:
    nodes = [
        helper.make_node("ReduceMean", ["x", "hw"], ["m"], keepdims=1),
        helper.make_node("ReduceMean", ["x", "c"], ["y"], keepdims=1),
    ]
    weights = {"hw": np.array([2, 3], np.int64), "c": np.array([1], np.int64)}
    model = _model(nodes, {"x": [1, 8, 4, 4]}, ["m", "y"], weights)
    spatial, channel = analyze_graph(model, {"x": [1, 8, 4, 4]})
    assert spatial.kind == "pool" and spatial.dpu_supported and spatial.macs == 8 * 16
    assert not channel.dpu_supported


def test_dynamic_dims_are_fixed_from_input_shapes() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["c"])
    shape = helper.make_node("Shape", ["c"], ["s"])
    reshape = helper.make_node("Reshape", ["c", "s"], ["y"])
    model = _model([conv, shape, reshape], {"x": ["N", 3, "H", "W"]}, ["y"], {"w": _w(4, 3, 1, 1)})
    conv_layer, shape_layer, reshape_layer = analyze_graph(model, {"x": [1, 3, 10, 6]})
    assert conv_layer.macs == 4 * 10 * 6 * 3
    assert shape_layer.kind == "other" and shape_layer.macs == 0
    assert reshape_layer.output_bytes == 4 * 10 * 6


def _qdq_conv_model() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 weights)) -> Q -> DQ, as a QDQ quantizer writes it."""
    scale = np.array(0.02, np.float32)
    zero = np.array(0, np.int8)
    weights = {
        "w_q": np.ones((8, 4, 3, 3), np.int8), "w_s": np.full(8, 0.01, np.float32),
        "w_z": np.zeros(8, np.int8), "s": scale, "z": zero,
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["out"]),
    ]
    return _model(nodes, {"x": [1, 4, 8, 8]}, ["out"], weights)


def test_qdq_nodes_are_free_and_weights_behind_dequantize_count() -> None:
    layers = analyze_graph(_qdq_conv_model(), {"x": [1, 4, 8, 8]})
    (conv,) = _by_op(layers, "Conv")
    assert conv.macs == 8 * 6 * 6 * 4 * 9
    assert conv.weight_bytes == 8 * 4 * 9
    assert conv.input_bytes == 4 * 8 * 8
    qdq = [layer for layer in layers if layer.op_type.endswith("Linear")]
    assert len(qdq) == 5
    assert all(q.kind == "other" and q.macs == 0 and q.dpu_supported for q in qdq)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({}, "Every graph input needs a shape"),
        ({"x": [1, 16, 32]}, "rank"),
        ({"x": [2, 16, 32, 32]}, "fixes this dimension to 1"),
        ({"x": [1, 16, 32, 32], "z": [1]}, "must name a graph input"),
        ({"x": [1, 16, 0, 32]}, "positive integers"),
    ],
)
def test_bad_input_shapes_are_rejected(shapes: dict, message: str) -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    model = _model([conv], {"x": [1, 16, 32, 32]}, ["y"], {"w": _w(8, 16, 1, 1)})
    with pytest.raises(TunerError, match=message):
        analyze_graph(model, shapes)


# --- ResNet-18, defined here with torch.nn (random weights) ---------------------------------


class _Block(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(self.relu(self.b1(self.c1(x)))))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, c_in = [], 64
        for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [_Block(c_in, c_out, stride), _Block(c_out, c_out, 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def export_resnet18(path: Path) -> onnx.ModelProto:
    """ResNet-18 exported with a symbolic batch dim (the dynamo exporter)."""
    torch.manual_seed(0)
    torch.onnx.export(
        ResNet18().eval(), (torch.randn(2, 3, 224, 224),), path, dynamo=True,
        external_data=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )
    return onnx.load(path)


@pytest.fixture(scope="module")
def resnet18_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resnet18") / "resnet18.onnx"
    model = export_resnet18(path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    return path


@pytest.fixture(scope="module")
def resnet18_layers(resnet18_path):
    return analyze_graph(onnx.load(resnet18_path), {"x": [1, 3, 224, 224]})


def test_resnet18_has_1_82_gmacs(resnet18_layers) -> None:
    total_gmacs = sum(layer.macs for layer in resnet18_layers) / 1e9
    assert total_gmacs == pytest.approx(1.82, rel=0.05)
    conv_gmacs = sum(layer.macs for layer in resnet18_layers if layer.kind in ("conv", "gemm")) / 1e9
    assert conv_gmacs == pytest.approx(1.814, rel=0.002)


def test_resnet18_structure_and_weights(resnet18_layers) -> None:
    assert len([layer for layer in resnet18_layers if layer.kind == "conv"]) == 20
    assert len([layer for layer in resnet18_layers if layer.kind == "gemm"]) == 1
    assert all(layer.dpu_supported for layer in resnet18_layers)
    # 11.69 M parameters (BatchNorm folded into the convs or kept, a few thousand either way).
    weights_m = sum(layer.weight_bytes for layer in resnet18_layers) / 1e6
    assert weights_m == pytest.approx(11.69, rel=0.01)
    stem = next(layer for layer in resnet18_layers if layer.kind == "conv")
    assert (stem.c_in, stem.c_out, stem.h_out, stem.w_out, stem.kernel_h) == (3, 64, 112, 112, 7)


def test_qdq_quantized_resnet18_keeps_macs_and_weights(resnet18_path, resnet18_layers) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._batches = iter([{"x": rng.standard_normal((1, 3, 224, 224), np.float32)}])

        def get_next(self):
            return next(self._batches, None)

    qdq_path = resnet18_path.with_name("resnet18_qdq.onnx")
    quantize_static(resnet18_path, qdq_path, _Reader(), quant_format=QuantFormat.QDQ)
    qdq_model = onnx.load(qdq_path)
    assert any(n.op_type == "DequantizeLinear" for n in qdq_model.graph.node)
    layers = analyze_graph(qdq_model, {"x": [1, 3, 224, 224]})

    def dense_macs(ls):
        return sum(layer.macs for layer in ls if layer.kind in ("conv", "gemm"))

    assert dense_macs(layers) == dense_macs(resnet18_layers)
    weighted = [layer for layer in layers if layer.kind in ("conv", "gemm")]
    fp32_weighted = [layer for layer in resnet18_layers if layer.kind in ("conv", "gemm")]
    assert sorted(layer.weight_bytes for layer in weighted) == sorted(
        layer.weight_bytes for layer in fp32_weighted
    )
    assert all(layer.dpu_supported for layer in layers)


@pytest.mark.parametrize(("attrs", "excluded"), [
    ({"pads": [1, 1, 1, 1]}, True),  # ONNX's default count_include_pad=0: divides by valid cells
    ({"pads": [1, 1, 1, 1], "count_include_pad": 1}, False),
    ({}, False),  # no padding: nothing to leave out
    ({"auto_pad": "SAME_UPPER"}, True),  # TensorFlow's SAME average pool
    ({"auto_pad": "VALID"}, False),
])
def test_average_pool_says_whether_it_leaves_padding_out(attrs: dict, excluded: bool) -> None:
    pool = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1], **attrs)
    model = _model([pool], {"x": [1, 8, 12, 12]}, ["y"])
    (layer,) = analyze_graph(model, {"x": [1, 8, 12, 12]})
    assert layer.kind == "pool" and layer.pad_excluded is excluded
