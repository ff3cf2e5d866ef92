"""What a user says about an ONNX model's inputs, and how each graph input is resolved.

Real models are not all ``[batch, ...]`` tensors. For each graph input tuner decides one role:

- **batched**: instances are stacked along a batch axis (axis 0 unless ``--batch-axis NAME:K``
  says otherwise, or the graph names the same batch symbol at another axis); every other
  dynamic dimension must be given with ``--input-shape NAME:D1,...`` (one instance, no batch).
- a real input whose batch axis the model fixes to 1 is allowed: the model then runs at batch 1
  only, and batch sizes above 1 are left out of the search.
- **fixed**: ``--fixed-input NAME=VALUE`` feeds every element VALUE on every call (a sample
  rate, a zero state tensor); a scalar input must be fixed. Fixed inputs leave the interface
  of tuner's copy of the model (see tuner.models.normalize), so clients never send them.

Every problem of every input is collected and reported in one error, naming the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from tuner.errors import TunerError

FIDELITY_KINDS = ("auto", "centred-l2", "sequence", "cosine")


@dataclass(frozen=True)
class ModelOptions:
    """Everything the command line says about a user's ONNX model (empty for built-ins)."""

    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    batch_axes: dict[str, int] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    fidelity: str = "auto"
    calibration_data: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.input_shapes or self.batch_axes or self.fixed or self.calibration_data
                    or self.fidelity != "auto")

    def key(self) -> str:
        """What changes tuner's copy of the model (shapes, axes, fixed values)."""
        return repr((sorted(self.input_shapes.items()), sorted(self.batch_axes.items()), sorted(self.fixed.items())))


@dataclass(frozen=True)
class ResolvedInput:
    """One graph input of the user's model and its role.

    Attributes:
        name: the graph input's name.
        dtype: numpy dtype name.
        dims: the full shape as the model declares it, with the batch axis set to 1 and every
            other dimension concrete.
        batch_axis: index of the batch axis in `dims`, or None (not batched).
        fixed_value: the value fed to every element, or None (a real input).
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    batch_axis: int | None
    fixed_value: float | None = None
    batch_fixed: bool = False  # the model fixes this input's batch axis to 1

    @property
    def instance_shape(self) -> tuple[int, ...]:
        """One instance's shape, batch axis removed (the shape clients see, batch first)."""
        return tuple(d for i, d in enumerate(self.dims) if i != self.batch_axis)


def _parse_pairs(args: list[str] | None, flag: str, sep: str, form: str) -> list[tuple[str, str]]:
    out = []
    for arg in args or []:
        name, ok, value = arg.partition(sep)
        if not ok or not name or not value.strip():
            raise TunerError(f"Got {arg!r} for {flag}. The form is {form}.")
        out.append((name, value.strip()))
    return out


def parse_batch_axes(args: list[str] | None) -> dict[str, int]:
    axes = {}
    for name, value in _parse_pairs(args, "--batch-axis", ":", "NAME:K, e.g. --batch-axis state:1"):
        if not value.isdigit():
            raise TunerError(f"Got {name}:{value} for --batch-axis. K must be an axis index >= 0, e.g. state:1.")
        axes[name] = int(value)
    return axes


def parse_fixed(args: list[str] | None) -> dict[str, float]:
    fixed = {}
    for name, value in _parse_pairs(args, "--fixed-input", "=", "NAME=VALUE, e.g. --fixed-input sr=16000"):
        try:
            fixed[name] = float(value)
        except ValueError:
            raise TunerError(f"Got {name}={value} for --fixed-input. VALUE must be a number, e.g. sr=16000 "
                             "or state=0 (every element of the input gets it).") from None
    return fixed


def _declared(inp: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each dim: its value, its symbol, or None (unnamed dynamic)."""
    out: list[int | str | None] = []
    for d in inp.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _batch_symbol(decls: dict[str, list[int | str | None]], opts: ModelOptions) -> str | None:
    """The symbol of the batch axis: one named like a batch ("batch", "batch_size") on a real
    input, else that of the first real input's batch axis, if named."""
    for name, dims in decls.items():
        named = [d for d in dims if isinstance(d, str) and "batch" in d.lower()]
        if name not in opts.fixed and name not in opts.batch_axes and len(set(named)) == 1:
            return named[0]
    for name, dims in decls.items():
        if name in opts.fixed or not dims:
            continue
        axis = opts.batch_axes.get(name, 0)
        if axis < len(dims) and isinstance(dims[axis], str):
            return dims[axis]  # type: ignore[return-value]
    return None


def _batch_axis(name: str, dims: list[int | str | None], symbol: str | None, opts: ModelOptions) -> int | None:
    if name in opts.batch_axes:
        return opts.batch_axes[name]
    if not dims:
        return None
    if symbol is not None and dims[0] != symbol and dims.count(symbol) == 1:
        return dims.index(symbol)  # the graph names the batch symbol at another axis (e.g. time-major)
    return 0


def resolve_inputs(model: onnx.ModelProto, opts: ModelOptions, path: Path,
                   graph_inputs: list[onnx.ValueInfoProto]) -> tuple[ResolvedInput, ...]:
    """Each graph input's role and concrete dims; every problem reported at once."""
    decls = {i.name: _declared(i) for i in graph_inputs}
    names = list(decls)
    problems: list[str] = []
    flags: tuple[tuple[str, set[str]], ...] = (("--input-shape", set(opts.input_shapes)),
                                               ("--batch-axis", set(opts.batch_axes)), ("--fixed-input", set(opts.fixed)))
    for flag, named in flags:
        unknown = sorted(named - set(names))
        if unknown:
            problems.append(f"{flag} names {unknown}, but the inputs of {path.name} are {names}: use those names.")
    symbol = _batch_symbol(decls, opts)
    resolved = []
    for value in model.graph.output:
        if not value.type.HasField("tensor_type"):
            kind = value.type.WhichOneof("value")
            problems.append(f"output {value.name!r} is a {kind}, not a tensor (a scikit-learn ZipMap gives a sequence of "
                            "maps): tuner measures and serves tensors. Re-export without it (skl2onnx: "
                            "options={id(model): {'zipmap': False}}).")
    for inp in graph_inputs:
        dims = decls[inp.name]
        if not inp.type.HasField("tensor_type") or inp.type.tensor_type.elem_type in (0, onnx.TensorProto.STRING):
            problems.append(f"input {inp.name!r} is not a numeric tensor (strings, sequences and maps are not "
                            "supported): tokenize outside the model and pass ids, or re-export it without that input.")
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)).name
        fixed = opts.fixed.get(inp.name)
        shown = "[" + ", ".join("?" if not isinstance(d, int) else str(d) for d in dims) + "]"
        if not dims and fixed is None:
            problems.append(f"input {inp.name!r} ({dtype}) is a scalar: it has no batch axis. Give its value with "
                            f"--fixed-input {inp.name}=VALUE.")
            continue
        axis = _batch_axis(inp.name, dims, symbol, opts)
        if fixed is not None and axis is not None and inp.name not in opts.batch_axes and axis < len(dims) \
                and isinstance(dims[axis], int):
            axis = None  # a fixed input with a static leading dim is one constant, not per instance
        if axis is not None and axis >= len(dims):
            problems.append(f"--batch-axis {inp.name}:{axis} is out of range: {inp.name!r} has rank {len(dims)} "
                            f"(shape {shown}). Use an axis in 0..{len(dims) - 1}.")
            continue
        size = dims[axis] if axis is not None else None
        batch_fixed = fixed is None and isinstance(size, int)
        if batch_fixed and size != 1:
            problems.append(f"input {inp.name!r} is {shown}: the model fixes its batch axis {axis} to {size}. "
                            f"tuner needs a dynamic batch (or a batch of 1): re-export it with a dynamic batch axis, "
                            f"or name the right one with --batch-axis {inp.name}:K.")
            continue
        rest = [d for i, d in enumerate(dims) if i != axis]
        given = opts.input_shapes.get(inp.name)
        if given is not None:
            if len(given) != len(rest) or any(isinstance(m, int) and m != g for m, g in zip(rest, given)):
                problems.append(f"--input-shape {inp.name}:{','.join(map(str, given))} does not fit: {inp.name!r} "
                                f"is {shown} with batch axis {axis}, so give {len(rest)} value(s) matching the "
                                "fixed ones.")
                continue
            concrete: list[int] = list(given)
        elif any(not isinstance(d, int) for d in rest):
            example = ",".join(str(d) if isinstance(d, int) else "D" for d in rest)
            problems.append(f"input {inp.name!r} is {shown} (? = dynamic, batch axis {axis}): set its dynamic "
                            f"dimensions with --input-shape {inp.name}:{example} (one instance, without the batch).")
            continue
        else:
            concrete = [int(d) for d in rest if isinstance(d, int)]
        full: list[int] = list(concrete)
        if axis is not None:
            full.insert(axis, 1)
        resolved.append(ResolvedInput(inp.name, dtype, tuple(full), axis, fixed, batch_fixed))
    if not problems and all(r.fixed_value is not None for r in resolved):
        problems.append(f"every input of {path.name} is fixed with --fixed-input; at least one must stay a real "
                        "input (the one requests carry).")
    if problems:
        raise TunerError(f"{path}: {len(problems)} problem(s) with its inputs:\n  - " + "\n  - ".join(problems))
    return tuple(resolved)
