"""Per-layer costs of an ONNX graph, the input of the DPU cost model.

`analyze_graph` fixes the graph inputs to the shapes of one instance, runs ONNX shape inference
and describes every node as a `LayerCost`: multiply-accumulates, int8 weight and activation
bytes, convolution geometry, and whether a Vitis AI DPU can run it (if not, the host CPU does).
The conventions of those figures are in `tuner.costmodels.graph.layer_cost`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import onnx
from onnx import helper

from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.costmodels.graph.tensors import fix_inputs, numel, required, shape_map, small_constants
from tuner.errors import field_error

# Free on a DPU (layout / address arithmetic, or folded into the neighbouring op).
_FREE_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
    "Identity", "Dropout", "Concat", "Pad", "Cast", "Shape", "Size", "Constant",
})
_POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
# Element-wise ops the DPU ALU/misc engine runs (activations are fused into the producer).
_DPU_ELTWISE_OPS = frozenset({
    "Add", "Mul", "Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish",
    "BatchNormalization", "Resize", "Upsample",
})
# Element-wise ops DPUs lack (Vitis AI runs them on the CPU; the quantizer can swap Sigmoid for
# HardSigmoid, which the DPU has).
_HOST_ELTWISE_OPS = frozenset({
    "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Pow", "Div", "Sub", "Erf", "Gelu", "Neg", "Abs",
    "Reciprocal", "Softplus", "Elu", "Selu", "Mish", "Where", "Equal", "Less", "Greater",
})
# Ops whose constant inputs are weights (stored off-chip and loaded by the DPU).
_WEIGHTED_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Add", "Mul", "PRelu",
})


def analyze_graph(
    model: onnx.ModelProto, input_shapes: dict[str, list[int]]
) -> list[LayerCost]:
    """Describe every node of `model` as a LayerCost for one instance.

    Args:
        model: an fp32 or QDQ-quantized ONNX model; symbolic dims are allowed.
        input_shapes: full shape of each graph input for one instance, batch dim included
            (e.g. {"x": [1, 3, 224, 224]}).

    Returns:
        One LayerCost per node, in graph order.

    Raises:
        TunerError: an input is missing or mis-shaped, or shapes cannot be inferred.
    """
    fixed = fix_inputs(model, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several types (InferenceError, ValidationError)
        raise field_error(
            "input_shapes", input_shapes,
            f"ONNX shape inference must succeed on the model with these shapes ({exc}).",
            "Give the shapes the model was exported for.",
        ) from exc
    graph = inferred.graph
    shapes = shape_map(inferred)
    consts = small_constants(inferred)
    static = {init.name for init in graph.initializer} | {""}
    graph_io = ({i.name for i in graph.input}, {o.name for o in graph.output})
    layers = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        inputs = [i for i in node.input if i]
        if node.op_type in ("Shape", "Size") or all(i in static for i in inputs):
            static.update(node.output)
            layers.append(LayerCost(name, node.op_type, "other", 0, 0, 0, 0, True))
            continue
        layer = _layer(name, node, shapes, static, consts)
        layers.append(dataclasses.replace(
            layer,
            graph_input_bytes=sum(numel(shapes, i) for i in inputs if i in graph_io[0]),
            graph_output_bytes=sum(numel(shapes, o) for o in node.output if o in graph_io[1]),
        ))
    return layers



def _layer(
    name: str, node: onnx.NodeProto, shapes: dict, static: set[str], consts: dict
) -> LayerCost:
    """LayerCost of a node with at least one non-static input."""
    op = node.op_type
    act_in = [i for i in node.input if i and i not in static]
    const_in = [i for i in node.input if i and i in static]
    io: dict[str, Any] = {
        "input_bytes": sum(numel(shapes, i) for i in act_in),
        "output_bytes": sum(numel(shapes, o) for o in node.output if o),
        "weight_bytes": sum(numel(shapes, i) for i in const_in) if op in _WEIGHTED_OPS else 0,
    }
    if node.domain not in ("", "ai.onnx"):
        return LayerCost(name, op, "other", 0, dpu_supported=False, **io)
    if op in _FREE_OPS:
        return LayerCost(name, op, "other", 0, dpu_supported=True, **io)
    if op in ("Conv", "ConvTranspose"):
        return _conv(name, node, shapes, io)
    if op in ("Gemm", "MatMul"):
        return _gemm(name, node, shapes, static, io)
    if op in _POOL_OPS or op == "ReduceMean":
        return _pool(name, node, shapes, consts, io)
    if op in _DPU_ELTWISE_OPS or op in _HOST_ELTWISE_OPS:
        out = required(shapes, node.output[0], name)
        return LayerCost(
            name, op, "eltwise", math.prod(out), dpu_supported=op in _DPU_ELTWISE_OPS,
            c_in=out[1] if len(out) >= 2 else 0, c_out=out[1] if len(out) >= 2 else 0,
            **_hw(out), **io,
        )
    # Softmax, Transpose, Gather on activations, LayerNormalization...: host CPU.
    return LayerCost(name, op, "other", 0, dpu_supported=False, **io)


def _hw(shape: list[int]) -> dict[str, Any]:
    """Output height/width of an NC(H)W tensor (1-D spatial: h = 1)."""
    if len(shape) >= 4:
        return {"h_out": shape[-2], "w_out": shape[-1]}
    if len(shape) == 3:
        return {"h_out": 1, "w_out": shape[-1]}
    return {"h_out": 1, "w_out": 1}


def _conv(name: str, node: onnx.NodeProto, shapes: dict, io: dict) -> LayerCost:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    groups = int(attrs.get("group", 1))
    x = required(shapes, node.input[0], name)
    w = required(shapes, node.input[1], name)
    y = required(shapes, node.output[0], name)
    kernel = w[2:]
    if node.op_type == "Conv":
        c_in, c_out = x[1], w[0]
        macs = math.prod(y) * w[1] * math.prod(kernel)
    else:  # ConvTranspose: every input pixel scatters a C_out/g x kernel patch
        c_in, c_out = w[0], w[1] * groups
        macs = math.prod(x) * w[1] * math.prod(kernel)
    depthwise = groups > 1 and groups == c_in and w[1] == 1
    return LayerCost(
        name, node.op_type, "depthwise" if depthwise else "conv", macs,
        dpu_supported=len(kernel) in (1, 2), c_in=c_in, c_out=c_out, **_hw(y),
        kernel_h=kernel[0] if len(kernel) >= 2 else 1, kernel_w=kernel[-1] if kernel else 1,
        groups=groups, **io,
    )


def _gemm(name: str, node: onnx.NodeProto, shapes: dict, static: set[str], io: dict) -> LayerCost:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    a = required(shapes, node.input[0], name)
    y = required(shapes, node.output[0], name)
    if node.op_type == "Gemm":
        k = a[0] if attrs.get("transA", 0) else a[1]
    else:
        k = a[-1]
    rows = math.prod(y[:-1]) if len(y) > 1 else 1
    # A DPU runs a MatMul as a fully-connected layer only when one operand is a weight.
    has_weight = node.input[0] in static or node.input[1] in static
    return LayerCost(
        name, node.op_type, "gemm", math.prod(y) * k, dpu_supported=has_weight,
        c_in=k, c_out=y[-1], h_out=1, w_out=rows, kernel_h=1, kernel_w=1, **io,
    )


def _pool(name: str, node: onnx.NodeProto, shapes: dict, consts: dict, io: dict) -> LayerCost:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = required(shapes, node.input[0], name)
    y = required(shapes, node.output[0], name)
    supported = True
    if node.op_type in ("MaxPool", "AveragePool"):
        kernel = list(attrs["kernel_shape"])
    else:  # global pooling: one window over the whole spatial extent
        kernel = x[2:]
        if node.op_type == "ReduceMean":
            supported = _reduces_spatial(node, attrs, consts, len(x))
    macs = math.prod(y) * math.prod(kernel)
    pad_excluded = node.op_type == "AveragePool" and not attrs.get("count_include_pad", 0) and _padded(attrs, x, y)
    return LayerCost(
        name, node.op_type, "pool", macs, dpu_supported=supported, pad_excluded=pad_excluded,
        c_in=x[1] if len(x) > 1 else 0, c_out=y[1] if len(y) > 1 else 0, **_hw(y),
        kernel_h=kernel[0] if len(kernel) >= 2 else 1, kernel_w=kernel[-1] if kernel else 1,
        **io,
    )


def _padded(attrs: dict, x: list[int], y: list[int]) -> bool:
    """Whether a MaxPool / AveragePool reads padded cells: explicit `pads`, or an auto_pad SAME
    whose windows reach past the input ((out - 1) * stride + kernel > in on some axis)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1] * len(kernel)))
        return any((o - 1) * st + k > i for i, o, st, k in zip(x[2:], y[2:], strides, kernel))
    return auto == "NOTSET" and any(attrs.get("pads", []))


def _reduces_spatial(node: onnx.NodeProto, attrs: dict, consts: dict, rank: int) -> bool:
    """Whether a ReduceMean averages exactly the spatial axes (the DPU runs it as a pool)."""
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = consts.get(node.input[1])
    if axes is None or rank < 3:
        return False
    return sorted(int(a) % rank for a in axes) == list(range(2, rank))
