"""The Open Inference Protocol (KServe V2 REST): parse requests, format responses.

Pure: no Ray, no ONNX Runtime. A request body looks like::

    {"id": "42", "inputs": [{"name": "x", "shape": [2, 1, 8, 8], "datatype": "FP32",
                             "data": [0.0, 0.1, ...]}]}

`data` is row-major, flat or nested. Every problem a client can cause raises `ProtocolError`
with a message that names the field, echoes what was sent and says what is expected; the
server answers it as HTTP 400 ``{"error": message}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.errors import TunerError

#: V2 tensor datatypes we accept, with their numpy dtypes (BYTES is not supported).
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2: dict[np.dtype, str] = {dt: name for name, dt in V2_TO_NUMPY.items()}

_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")


class ProtocolError(TunerError):
    """A request the client must fix; served as HTTP 400 with ``{"error": message}``."""


def _short(value: object, limit: int = 80) -> str:
    """repr() of `value`, cut so that a huge `data` list cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(field_name: str, value: object, rule: str, fix: str) -> ProtocolError:
    return ProtocolError(f"Got {_short(value)} for {field_name}. {rule} {fix}")


def v2_datatype(dtype: np.dtype | type) -> str:
    """The V2 datatype name of a numpy dtype, e.g. float32 -> "FP32".

    Raises:
        ValueError: for dtypes V2 has no name for here (strings, objects, complex).
    """
    try:
        return NUMPY_TO_V2[np.dtype(dtype)]
    except KeyError:
        raise ValueError(
            f"Got numpy dtype {np.dtype(dtype)} for a tensor. Supported: "
            f"{sorted(str(d) for d in NUMPY_TO_V2)}. Cast the tensor first."
        ) from None


@dataclass(frozen=True)
class TensorMeta:
    """A tensor as the model metadata endpoint describes it.

    Attributes:
        name: tensor name in the model.
        datatype: V2 datatype, e.g. "FP32".
        shape: dimensions; -1 marks a variable one (always the batch, dimension 0).
    """

    name: str
    datatype: str
    shape: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.datatype not in V2_TO_NUMPY:
            raise ValueError(
                f"Got {self.datatype!r} for the datatype of tensor {self.name!r}. "
                f"Supported: {list(V2_TO_NUMPY)}."
            )

    def to_v2(self) -> dict[str, Any]:
        """The ``{"name", "datatype", "shape"}`` object of the V2 metadata response."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class InputMeta(TensorMeta):
    """A model input: dimension 0 is the batch (-1), every other dimension is fixed (>= 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shape or self.shape[0] != -1 or any(d < 1 for d in self.shape[1:]):
            raise ValueError(
                f"Got shape {self.shape} for input {self.name!r}. An input needs -1 (the batch) "
                "first and fixed sizes >= 1 after it, e.g. [-1, 1, 8, 8]."
            )

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype requests are converted to."""
        return V2_TO_NUMPY[self.datatype]


def decode_body(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Decode a request body to a JSON object and check its top-level keys.

    Raises:
        ProtocolError: malformed JSON, a non-object body, an unknown key, or a wrong `id` or
            `parameters` type.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("the request body", bytes(body[:40]), f"It is not UTF-8 ({exc.reason}).",
                       "Send UTF-8 encoded JSON.") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise _bad("the request body", body, f"It is not valid JSON ({exc}).",
                       'Send a JSON object such as {"inputs": [{"name": ..., "shape": ..., '
                       '"datatype": ..., "data": [...]}]}.') from None
    if not isinstance(body, dict):
        raise _bad("the request body", body, "It must be a JSON object.",
                   'Wrap the request as {"inputs": [...]}.')
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise _bad("the request keys", unknown, f"Allowed keys: {list(_REQUEST_KEYS)}.",
                   "Remove the unknown keys.")
    if "id" in body and not isinstance(body["id"], str):
        raise _bad("id", body["id"], "The request id must be a string.", 'Send e.g. "id": "42".')
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise _bad("parameters", body["parameters"], "It must be a JSON object.",
                   "Send an object or leave it out.")
    return body


def _check_shape(where: str, shape: object, meta: InputMeta, max_instances: int) -> list[int]:
    """Validate a request shape against `meta`; returns it as a list of ints."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise _bad(f"{where}.shape", shape, "The shape must be a list of integers.",
                   f"Send [n, {', '.join(map(str, meta.shape[1:]))}].")
    expected = f"[n, {', '.join(map(str, meta.shape[1:]))}] with 1 <= n <= {max_instances}"
    if len(shape) != len(meta.shape) or shape[1:] != meta.shape[1:]:
        raise _bad(f"{where}.shape", shape, f"Input {meta.name!r} takes shape {expected}.",
                   "Reshape the data to the model's per-instance shape (see GET /v2/models/NAME).")
    if not 1 <= shape[0] <= max_instances:
        raise _bad(f"{where}.shape[0]", shape[0],
                   f"The number of instances per request must be between 1 and {max_instances} "
                   "(the deployed batch size).",
                   f"Split the request into requests of at most {max_instances} instances.")
    return shape


def _to_array(where: str, data: object, shape: list[int], meta: InputMeta) -> np.ndarray:
    """Convert JSON `data` (flat or nested, row-major) to an array of `meta.dtype` and `shape`."""
    if not isinstance(data, list):
        raise _bad(f"{where}.data", data, "The data must be a JSON list (flat or nested).",
                   "Send the tensor's values in row-major order.")
    try:
        raw = np.array(data)
    except (ValueError, TypeError):
        raise _bad(f"{where}.data", data, "Nested data must be rectangular.",
                   "Send equal-length rows, or a flat list.") from None
    kind = raw.dtype.kind
    if meta.datatype == "BOOL":
        ok, wanted = kind == "b", "true/false values"
    elif meta.dtype.kind in "iu":
        ok, wanted = kind in "iu", "integers"
    else:
        ok, wanted = kind in "iuf", "numbers"
    if raw.size and not ok:
        raise _bad(f"{where}.data", data, f"Datatype {meta.datatype} takes {wanted} only.",
                   f"Send {wanted}, not strings, nulls or objects.")
    expected_size = math.prod(shape)
    if raw.size != expected_size or (raw.ndim > 1 and list(raw.shape) != shape):
        raise _bad(f"{where}.data", data,
                   f"Shape {shape} needs {expected_size} values, flat or nested as {shape}; "
                   f"got {raw.size} values in shape {list(raw.shape)}.",
                   "Make data and shape agree.")
    if meta.dtype.kind in "iu" and raw.size:
        info = np.iinfo(meta.dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise _bad(f"{where}.data", [raw.min().item(), raw.max().item()],
                       f"{meta.datatype} holds values from {info.min} to {info.max}.",
                       "Send values in range or use a model with a wider input type.")
    return raw.astype(meta.dtype, copy=False).reshape(shape)


def parse_infer_request(
    body: bytes | str | dict[str, Any], inputs: list[InputMeta], max_instances: int
) -> dict[str, np.ndarray]:
    """Validate a V2 inference request and return its tensors.

    Args:
        body: the raw request body, or an already decoded JSON object.
        inputs: the model's inputs (batch dimension -1, other dimensions fixed).
        max_instances: the largest number of instances (dimension 0) one request may carry.

    Returns:
        Input name -> array of the input's dtype and shape ``[n, *per_instance_shape]``; every
        input has the same n.

    Raises:
        ProtocolError: anything the client must fix, named and explained.
    """
    request = decode_body(body)
    by_name = {meta.name: meta for meta in inputs}
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise _bad("inputs", entries, "A request needs a non-empty list of input tensors.",
                   f"Send one entry per model input: {list(by_name)}.")
    tensors: dict[str, np.ndarray] = {}
    for i, entry in enumerate(entries):
        where = f"inputs[{i}]"
        if not isinstance(entry, dict):
            raise _bad(where, entry, "Each input must be a JSON object.",
                       'Send {"name", "shape", "datatype", "data"}.')
        missing_keys = [k for k in ("name", "shape", "datatype", "data") if k not in entry]
        unknown_keys = sorted(set(entry) - set(_INPUT_KEYS))
        if missing_keys or unknown_keys:
            raise _bad(f"{where} keys", sorted(entry),
                       f"An input has keys {list(_INPUT_KEYS[:3])} and 'data' (plus optional "
                       f"'parameters'); missing {missing_keys}, unknown {unknown_keys}.",
                       "Add the missing keys and remove the unknown ones.")
        name = entry["name"]
        meta = by_name.get(name) if isinstance(name, str) else None
        if meta is None:
            raise _bad(f"{where}.name", name, f"The model's inputs are {list(by_name)}.",
                       "Use one of these names.")
        where = f"{where} ({name!r})"
        if name in tensors:
            raise _bad(f"{where}.name", name, "Each input may appear once.",
                       "Remove the duplicate entry.")
        if entry["datatype"] != meta.datatype:
            raise _bad(f"{where}.datatype", entry["datatype"],
                       f"Input {name!r} takes datatype {meta.datatype!r}.",
                       f"Send the data as {meta.datatype}.")
        shape = _check_shape(where, entry["shape"], meta, max_instances)
        tensors[name] = _to_array(where, entry["data"], shape, meta)
    missing = [name for name in by_name if name not in tensors]
    if missing:
        raise _bad("inputs", [e.get("name") for e in entries],
                   f"The model needs every input; missing {missing}.", "Add the missing inputs.")
    counts = {name: int(t.shape[0]) for name, t in tensors.items()}
    if len(set(counts.values())) > 1:
        raise _bad("the inputs' shape[0]", counts,
                   "All inputs must carry the same number of instances.",
                   "Send the same n as shape[0] of every input.")
    return tensors


def requested_outputs(body: dict[str, Any], output_names: list[str]) -> list[str]:
    """The output names a decoded request asks for (all of them when it names none).

    Raises:
        ProtocolError: `outputs` is not a list of ``{"name": ...}`` objects naming real outputs.
    """
    wanted = body.get("outputs")
    if wanted is None:
        return list(output_names)
    entries = wanted if isinstance(wanted, list) else []
    names = [o.get("name") for o in entries if isinstance(o, dict)]
    if not names or len(names) != len(wanted) or not all(n in output_names for n in names):
        raise _bad("outputs", wanted, f'It must be a list of {{"name": ...}} with names in '
                   f"{output_names}.", "Fix the names, or leave 'outputs' out to get every output.")
    return names


def format_infer_response(
    model_name: str, outputs: dict[str, np.ndarray], request_id: str | None = None
) -> dict[str, Any]:
    """A V2 inference response; each output's data is flattened in row-major order.

    Args:
        model_name: the served model's name.
        outputs: output name -> array (any supported numpy dtype).
        request_id: the request's `id`, echoed when given.
    """
    response: dict[str, Any] = {"model_name": model_name}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": v2_datatype(array.dtype),
            "data": np.asarray(array).ravel().tolist(),
        }
        for name, array in outputs.items()
    ]
    return response
