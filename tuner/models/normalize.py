"""tuner's copy of a user's ONNX model: one batch-first interface for every part of tuner.

The bench, the Serve app and promote all stack instances along axis 0 of every input and
split outputs along axis 0. The copy is made to fit that, without changing what it computes:

- a real input whose batch axis K is not 0 gets a Transpose inside the graph, so clients send
  it batch first (the same data, axes in the order ``[batch, the others in order]``);
- a fixed input (``--fixed-input NAME=VALUE``) leaves the interface: a Constant (no batch axis)
  or a ConstantOfShape sized by the request's batch produces it inside the graph;
- initializers no node reads are dropped (ONNX Runtime would warn about each);
- an output whose batch axis is not 0 (found by running batches of 2 and 3) gets a Transpose
  that moves its batch axis first.

Each change is listed in the notes recorded with the model and printed by ``tuner tune``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tuner.errors import TunerError
from tuner.models.inputs import ResolvedInput

_SUFFIX = "__tuner_orig"


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph inside it (If, Loop and Scan bodies), recursively."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _graphs(sub)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Point every consumer of `old` (subgraphs included) at `new`."""
    for g in _graphs(graph):
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new


def drop_unused_initializers(graph: onnx.GraphProto) -> int:
    """Remove initializers no node reads (ONNX Runtime warns once per such tensor otherwise)."""
    used: set[str] = set()
    for g in _graphs(graph):  # a subgraph may read (or output) an outer initializer by name
        used.update(o.name for o in g.output)
        for node in g.node:
            used.update(node.input)
    unused = [i for i in graph.initializer if i.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return len(unused)


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def bind_inputs(model: onnx.ModelProto, resolved: tuple[ResolvedInput, ...]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy with real inputs batch first (symbolic batch) and fixed inputs computed inside."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    by_name = {r.name: r for r in resolved}
    real = [r for r in resolved if r.fixed_value is None]
    front: list[onnx.NodeProto] = []
    notes: list[str] = []
    batch_1d = "tuner_batch_1d"
    needs_batch = any(r.fixed_value is not None and r.batch_axis is not None for r in resolved)
    if needs_batch:
        front += [helper.make_node("Shape", [real[0].name], ["tuner_shape_0"]),
                  _const("tuner_axis0", np.array([0], np.int64)),
                  helper.make_node("Gather", ["tuner_shape_0", "tuner_axis0"], [batch_1d], axis=0)]
    for value in list(graph.input):
        r = by_name.get(value.name)
        if r is None:  # an initializer that is also listed as an input
            continue
        if r.fixed_value is not None:
            graph.input.remove(value)
            fill = np.asarray(r.fixed_value, dtype=r.dtype)
            if r.batch_axis is None:
                front.append(_const(r.name, np.full(r.dims, fill, dtype=r.dtype)))
                notes.append(f"input {r.name!r} fixed to {r.fixed_value:g} ({r.dtype}{list(r.dims)}), not sent by clients")
            else:
                before, after = list(r.dims[: r.batch_axis]), list(r.dims[r.batch_axis + 1 :])
                parts = [batch_1d]
                if before:
                    front.append(_const(f"{r.name}_tuner_before", np.array(before, np.int64)))
                    parts.insert(0, f"{r.name}_tuner_before")
                if after:
                    front.append(_const(f"{r.name}_tuner_after", np.array(after, np.int64)))
                    parts.append(f"{r.name}_tuner_after")
                front += [helper.make_node("Concat", parts, [f"{r.name}_tuner_shape"], axis=0),
                          helper.make_node("ConstantOfShape", [f"{r.name}_tuner_shape"], [r.name],
                                           value=numpy_helper.from_array(fill.reshape(1), f"{r.name}_fill"))]
                shown = [*before, "batch", *after]
                notes.append(f"input {r.name!r} fixed: every element {r.fixed_value:g} ({r.dtype}{shown}), not sent "
                             "by clients")
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        new = [onnx.TensorShapeProto.Dimension(dim_value=1) if r.batch_fixed
               else onnx.TensorShapeProto.Dimension(dim_param="batch")]
        new += [onnx.TensorShapeProto.Dimension(dim_value=d) for d in r.instance_shape]
        dims.extend(new)
        if r.batch_axis not in (None, 0):
            inner = r.name + _SUFFIX
            _rename_uses(graph, r.name, inner)
            rank = len(r.dims)
            perm = [i + 1 if i < r.batch_axis else (0 if i == r.batch_axis else i) for i in range(rank)]
            front.append(helper.make_node("Transpose", [r.name], [inner], perm=perm))
            notes.append(f"input {r.name!r}: batch axis {r.batch_axis} of the model; clients send it batch first "
                         f"[batch, {', '.join(map(str, r.instance_shape))}] (a Transpose inside tuner's copy)")
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(front + nodes)
    dropped = drop_unused_initializers(graph)
    if dropped:
        notes.append(f"{dropped} initializer(s) that no node reads left out of tuner's copy")
    return out, notes


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in sess.run(None, feeds)]


def check_batch_of_one(model: onnx.ModelProto, feeds_1: dict[str, np.ndarray], path: Path) -> list[str]:
    """A model with a fixed batch of 1: each output must lead with that batch of 1."""
    try:
        outs = _run(model, feeds_1)
    except Exception as exc:
        raise TunerError(f"{path}: the model does not run on one instance of the inputs tuner resolved "
                         f"({type(exc).__name__}: {str(exc)[:300]}). Check --input-shape and --fixed-input.") from None
    for value, out in zip(model.graph.output, outs):
        if out.ndim == 0 or out.shape[0] != 1:
            raise TunerError(f"{path}: output {value.name!r} has shape {list(out.shape)} for one instance; with a "
                             "batch fixed to 1, tuner needs every output to lead with that batch of 1.")
    return ["the model fixes its batch to 1: it is tuned and served at batch 1 only"]


def batch_outputs_first(model: onnx.ModelProto, feeds_2: dict[str, np.ndarray], feeds_3: dict[str, np.ndarray],
                        path: Path) -> tuple[onnx.ModelProto, list[str]]:
    """Find each output's batch axis by running batches of 2 and 3; move it first where it is not.

    Raises:
        TunerError: the model does not run at batch 2 (a fixed batch), or an output has no
            batch axis (it is the same for every batch size, so it cannot be split per request).
    """
    try:
        outs_2, outs_3 = _run(model, feeds_2), _run(model, feeds_3)
    except Exception as exc:
        try:
            _run(model, {k: v[:1] for k, v in feeds_2.items()})
        except Exception as exc_1:
            raise TunerError(
                f"{path}: the model does not run even on one instance of the inputs tuner made for it "
                f"({type(exc_1).__name__}: {str(exc_1)[:300]}). Check --input-shape and --fixed-input, or give "
                "inputs it accepts with --calibration-data FILE.npz.") from None
        raise TunerError(
            f"{path}: the model does not run with a batch of 2 ({type(exc).__name__}: {str(exc)[:300]}). tuner "
            "stacks instances along a batch axis: re-export the model with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_shapes=...)), or name the batch axis of each input with "
            "--batch-axis NAME:K, or fix inputs that are not per instance with --fixed-input NAME=VALUE.") from None
    graph = model.graph
    notes: list[str] = []
    for value, a, b in zip(list(graph.output), outs_2, outs_3):
        differ = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        if a.ndim != b.ndim or len(differ) != 1 or (a.shape[differ[0]], b.shape[differ[0]]) != (2, 3):
            raise TunerError(
                f"{path}: output {value.name!r} has shape {list(a.shape)} at batch 2 and {list(b.shape)} at batch 3; "
                "tuner needs exactly one axis that grows with the batch, to split outputs per request. Re-export "
                "the model so that every output is per instance.")
        axis = differ[0]
        if axis == 0:
            continue
        inner = value.name + _SUFFIX
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = inner
        _rename_uses(graph, value.name, inner)
        perm = [axis] + [i for i in range(a.ndim) if i != axis]
        graph.node.append(helper.make_node("Transpose", [inner], [value.name], perm=perm))
        value.type.tensor_type.ClearField("shape")
        notes.append(f"output {value.name!r}: batch axis {axis} of the model; returned batch first (a Transpose "
                     "inside tuner's copy)")
    return model, notes
