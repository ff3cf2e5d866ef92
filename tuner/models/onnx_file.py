"""User-supplied ONNX files: check them, resolve their inputs, cache tuner's fp32 copy.

Every dynamic dimension except the batch axis must be given with ``--input-shape
NAME:D1,D2,...`` (one instance's shape, without the batch); inputs are resolved in
tuner.models.inputs and the copy is made in tuner.models.normalize. Nothing here unpickles
anything: a PyTorch checkpoint is refused with the command that converts it.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from tuner.errors import TunerError
from tuner.models import cache
from tuner.models.data import synthetic_inputs
from tuner.models.inputs import ModelOptions, ResolvedInput, resolve_inputs
from tuner.models.normalize import batch_outputs_first, bind_inputs, check_batch_of_one
from tuner.models.spec import InputSpec

NORMALIZE_VERSION = "batch-first-v1"

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


def check_inputs(path: Path, opts: ModelOptions) -> tuple[ResolvedInput, ...]:
    """Load and check the user's file and resolve its inputs (fast: no model run)."""
    model = load_checked(path)
    return resolve_inputs(model, opts, path, graph_inputs(model))


def cached_fp32(path: Path, opts: ModelOptions) -> tuple[Path, tuple[InputSpec, ...], list[str]]:
    """Check the user's ONNX file and cache tuner's fp32 copy: self-contained, batch first,
    fixed inputs bound (tuner.models.normalize). Returns its path, its inputs and the notes
    saying what differs from the user's interface."""
    model = load_checked(path)
    resolved = resolve_inputs(model, opts, path, graph_inputs(model))
    specs = tuple(InputSpec(r.name, r.instance_shape, r.dtype) for r in resolved if r.fixed_value is None)
    key = cache.sha256_bytes(cache.sha256_file(path).encode(), opts.key().encode(), NORMALIZE_VERSION.encode())
    entry = cache.entry_dir(path.stem, key)
    out, record = entry / "fp32.onnx", entry / "interface.json"
    known = cache.read_json(record)
    if not out.exists() or known is None:
        bound, notes = bind_inputs(model, resolved)
        fixed_batch = any(r.batch_fixed for r in resolved)
        if fixed_batch:
            out_notes = check_batch_of_one(bound, synthetic_inputs(specs, 1, seed=0), path)
        else:
            bound, out_notes = batch_outputs_first(bound, synthetic_inputs(specs, 2, seed=0),
                                                   synthetic_inputs(specs, 3, seed=1), path)
        if bound.ByteSize() > 2**31 - 2**26:
            raise TunerError(f"{path} is larger than ONNX's 2 GB single-file limit once loaded "
                             f"({bound.ByteSize() / 2**30:.1f} GB); tuner handles models below it for now.")
        cache.write_atomic(out, bound.SerializeToString())
        known = {"notes": notes + out_notes, "max_batch": 1 if fixed_batch else None}
        cache.write_json(record, known)
    return out, specs, list(known["notes"])


def max_batch(fp32: Path) -> int | None:
    """The largest batch tuner's copy takes (1 for a model that fixes it), None for any."""
    known = cache.read_json(fp32.parent / "interface.json") or {}
    value = known.get("max_batch")
    return int(value) if value else None
