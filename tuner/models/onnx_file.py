"""User-supplied ONNX files: check them, fix their dynamic dimensions, cache an fp32 copy.

Every dynamic dimension except the leading batch dimension must be given with
``--input-shape NAME:D1,D2,...`` (one instance's shape, without the batch). Nothing here
unpickles anything: a PyTorch checkpoint is refused with the command that converts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from tuner.errors import TunerError
from tuner.models import cache
from tuner.models.spec import InputSpec

_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"


def parse_input_shapes(args: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:D1,D2,...`` strings into {name: shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for arg in args or []:
        name, sep, dims = arg.partition(":")
        try:
            shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        except ValueError:
            shape = None
        if not sep or not name or not shape or any(d < 1 for d in shape):
            raise TunerError(
                f"Got {arg!r} for --input-shape. The form is NAME:D1,D2,... with positive "
                "integers: one instance's shape without the batch dimension, e.g. "
                "--input-shape x:3,224,224."
            )
        shapes[name] = shape
    return shapes


def _refuse_non_onnx(path: Path, head: bytes) -> None:
    if head.startswith(_ZIP_MAGIC) or head[:2] in _PICKLE_MAGIC:
        raise TunerError(
            f"{path} looks like a PyTorch checkpoint (pickle/zip), not ONNX. tuner never "
            "unpickles files (it could run arbitrary code). Export the model to ONNX first: "
            "torch.onnx.export(model, (example,), 'model.onnx', dynamo=True)."
        )


def load_checked(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, refusing what is not one, with external data kept inside its folder."""
    if not path.is_file():
        raise TunerError(
            f"Got {str(path)!r} for --model. It is not a file, and not a built-in model "
            "(digits-cnn, resnet18). Pass an existing .onnx file or a built-in name."
        )
    with open(path, "rb") as f:
        head = f.read(8)
    _refuse_non_onnx(path, head)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise TunerError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}). "
            "Check that the file is complete (not truncated) and really ONNX."
        ) from None
    if not model.graph.node:
        raise TunerError(f"{path} has an empty graph (or is not ONNX). Pass a valid ONNX model.")
    base = path.parent.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (base / loc).resolve()
            if base not in target.parents:
                raise TunerError(
                    f"{path}: tensor {tensor.name!r} points at external data {loc!r}, outside "
                    f"the model's folder {base}. Refused for safety: keep external data files "
                    "next to the model."
                )
    try:
        onnx.load_external_data_for_model(model, str(base))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise TunerError(f"{path} is not a valid ONNX model: {exc}") from None
    return model


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def resolve_inputs(
    model: onnx.ModelProto, given: dict[str, tuple[int, ...]], path: Path
) -> tuple[InputSpec, ...]:
    """One InputSpec per graph input; dynamic non-batch dims come from `given`."""
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TunerError(
            f"Got --input-shape for {unknown}, but {path.name} has inputs {names}. "
            "Use the model's input names."
        )
    specs = []
    for inp in inputs:
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if not dims:
            raise TunerError(f"Input {inp.name!r} of {path.name} is a scalar; tuner needs a batch dimension.")
        rest = dims[1:]
        if inp.name in given:
            shape = given[inp.name]
            if len(shape) != len(rest) or any(m is not None and m != g for m, g in zip(rest, shape)):
                shown = ["?" if d is None else d for d in rest]
                raise TunerError(
                    f"Got --input-shape {inp.name}:{','.join(map(str, shape))}, but the model's "
                    f"input {inp.name!r} has per-instance shape {shown} (? = dynamic). "
                    "Give one value per dimension after the batch, matching the fixed ones."
                )
        elif any(d is None or d == 0 for d in rest):
            dynamic = ",".join("?" if d is None else str(d) for d in rest)
            raise TunerError(
                f"Input {inp.name!r} of {path.name} has dynamic dimensions [{dynamic}] after the "
                f"batch. Set them with --input-shape {inp.name}:D1,D2,... (one instance's "
                f"shape without the batch), e.g. --input-shape {inp.name}:3,224,224."
            )
        else:
            shape = tuple(int(d) for d in rest if d is not None)
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        specs.append(InputSpec(inp.name, tuple(shape), np.dtype(dtype).name))
    return tuple(specs)


def fix_shapes(model: onnx.ModelProto, specs: tuple[InputSpec, ...]) -> onnx.ModelProto:
    """A copy whose inputs have a symbolic batch and the given fixed per-instance dims."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    by_name = {s.name: s for s in specs}
    for inp in graph_inputs(fixed):
        dims = inp.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = "batch"
        for d, v in zip(list(dims)[1:], by_name[inp.name].shape):
            d.Clear()
            d.dim_value = v
    return fixed


def cached_fp32(path: Path, given: dict[str, tuple[int, ...]]) -> tuple[Path, tuple[InputSpec, ...]]:
    """Check the user's ONNX file and cache a self-contained, shape-fixed fp32 copy."""
    model = load_checked(path)
    specs = resolve_inputs(model, given, path)
    key = cache.sha256_bytes(cache.sha256_file(path).encode(), repr(specs).encode())
    out = cache.entry_dir(path.stem, key) / "fp32.onnx"
    if not out.exists():
        cache.write_atomic(out, fix_shapes(model, specs).SerializeToString())
    return out, specs
