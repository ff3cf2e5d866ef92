"""The tensors of an ONNX graph at one instance: the graph with every input fixed to its concrete
shape, each tensor's shape after inference, and the values of small integer constants.
"""

from __future__ import annotations

import math

import onnx
from onnx import numpy_helper

from tuner.errors import field_error


def fix_inputs(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """A copy of `model` with every graph input set to its concrete shape."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    if fixed.functions:
        fixed = onnx.inliner.inline_local_functions(fixed)  # type: ignore[attr-defined]
    graph = fixed.graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializers]
    names = [i.name for i in real_inputs]
    for key in input_shapes:
        if key not in names:
            raise field_error(
                "input_shapes", key, f"Every key must name a graph input; the inputs are {names}.",
                "Rename or remove the key.",
            )
    for value in real_inputs:
        if value.name not in input_shapes:
            raise field_error(
                f"input_shapes[{value.name!r}]", None, "Every graph input needs a shape.",
                f"Add {value.name!r} with its full shape for one instance, batch dim 1 included.",
            )
        shape = list(input_shapes[value.name])
        if not value.type.tensor_type.HasField("shape"):  # rank unknown: take the given one
            value.type.tensor_type.shape.dim.extend(
                onnx.TensorShapeProto.Dimension() for _ in shape
            )
        dims = value.type.tensor_type.shape.dim
        if not all(isinstance(d, int) and d > 0 for d in shape) or len(shape) != len(dims):
            raise field_error(
                f"input_shapes[{value.name!r}]", shape,
                f"The shape must be {len(dims)} positive integers (the input's rank).",
                "Give the full shape of one instance, batch dim 1 included.",
            )
        for axis, (dim, size) in enumerate(zip(dims, shape)):
            if dim.HasField("dim_value") and dim.dim_value not in (0, size):
                raise field_error(
                    f"input_shapes[{value.name!r}][{axis}]", size,
                    f"The model fixes this dimension to {dim.dim_value}.",
                    f"Use {dim.dim_value}.",
                )
            dim.Clear()
            dim.dim_value = size
    # Stale symbolic shapes would be merged with the concrete ones: let inference redo them.
    del graph.value_info[:]
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    return fixed


def shape_map(model: onnx.ModelProto) -> dict[str, list[int] | None]:
    """Concrete shape of every tensor, None where a dim is still unknown."""
    out: dict[str, list[int] | None] = {}
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims)
        out[value.name] = [d.dim_value for d in dims] if known else None
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = list(node.attribute[0].t.dims)
    return out


def numel(shapes: dict[str, list[int] | None], name: str) -> int:
    """Element count of tensor `name`, 0 where its shape is unknown."""
    shape = shapes.get(name)
    return math.prod(shape) if shape is not None else 0


def required(shapes: dict[str, list[int] | None], name: str, node: str) -> list[int]:
    """Shape of tensor `name` (an input or output of `node`); TunerError where it is unknown."""
    shape = shapes.get(name)
    if shape is None:
        raise field_error(
            f"tensor {name!r} of node {node!r}", "unknown shape",
            "Shape inference must give conv, gemm, pool and element-wise tensors a fixed shape.",
            "Export the model with static shapes besides the batch dim, or fix every dynamic "
            "dim of the inputs (tuner: --input-shape NAME:D1,...).",
        )
    return shape


def small_constants(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Values of small integer constants (initializers and Constant nodes), e.g. reduce axes."""
    tensors = [(init.name, init) for init in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors.append((node.output[0], node.attribute[0].t))
    out: dict[str, list[int]] = {}
    for name, tensor in tensors:
        if math.prod(tensor.dims) <= 16 and tensor.data_type in _INT_TYPES:
            out[name] = [int(v) for v in numpy_helper.to_array(tensor).ravel()]
    return out


_INT_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})
