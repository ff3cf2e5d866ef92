"""The Open Inference Protocol (KServe V2 REST): parse requests, format responses.

Pure: no Ray, no ONNX Runtime. A request body looks like::

    {"id": "42", "inputs": [{"name": "x", "shape": [2, 1, 8, 8], "datatype": "FP32",
                             "data": [0.0, 0.1, ...]}]}

`data` is row-major, flat or nested. With the binary tensor data extension (as Triton and
KServe define it) the body is a JSON header followed by raw tensor bytes: the HTTP header
``Inference-Header-Content-Length: N`` gives the JSON header's length in bytes, and each binary
input carries ``"parameters": {"binary_data_size": BYTES}`` instead of ``data``; the inputs'
bytes follow the header in the order of ``inputs``, little-endian, row-major (BOOL: one byte).

Every problem a client can cause raises `ProtocolError` with a message that names the field,
echoes what was sent and says what is expected; the server answers it with the error's
`status` (400, or 413 / 415 / 408 for the subclasses) and ``{"error": message}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any

import numpy as np

from serving.v2.types import (  # re-exported: the protocol's public vocabulary
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    NUMPY_TO_V2,
    V2_TO_NUMPY,
    InputMeta,
    PayloadTooLarge,
    ProtocolError,
    RequestTimeout,
    TensorMeta,
    UnsupportedMediaType,
    v2_datatype,
)
from serving.v2.types import bad as _bad

_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
#: Parameters we understand, per level; anything else is refused rather than silently ignored.
_REQUEST_PARAMETERS = ("binary_data_output",)
_INPUT_PARAMETERS = ("binary_data_size",)
_OUTPUT_PARAMETERS = ("binary_data",)

__all__ = [
    "BINARY_TYPE", "HEADER_LENGTH", "JSON_TYPE", "NUMPY_TO_V2", "V2_TO_NUMPY", "InputMeta",
    "PayloadTooLarge", "ProtocolError", "RequestTimeout", "TensorMeta", "UnsupportedMediaType",
    "decode_body", "format_infer_response", "output_selection", "parse_infer_request",
    "requested_outputs", "v2_datatype",
]


def decode_body(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Decode a request body to a JSON object and check its top-level keys.

    Raises:
        ProtocolError: malformed JSON, a non-object body, an unknown key, a wrong `id` or
            `parameters` type, or a request parameter this server does not understand.
    """
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("the request body", raw[:40], f"It is not UTF-8 ({exc.reason}).",
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
    _check_parameters("parameters", body.get("parameters", {}), _REQUEST_PARAMETERS)
    flag = body.get("parameters", {}).get("binary_data_output", False)
    if not isinstance(flag, bool):
        raise _bad("parameters.binary_data_output", flag, "It must be true or false.",
                   "Send true to get every output as binary data, or leave it out.")
    return body


def _check_parameters(where: str, parameters: object, allowed: tuple[str, ...]) -> dict:
    """A `parameters` object holding only keys we understand (a typo must not pass silently)."""
    if not isinstance(parameters, dict):
        raise _bad(where, parameters, "It must be a JSON object.",
                   "Send an object or leave it out.")
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise _bad(f"{where} keys", unknown, f"This server understands only {list(allowed)} here.",
                   "Remove the other keys.")
    return parameters


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


def _from_bytes(where: str, size: object, shape: list[int], meta: InputMeta, blob: bytes,
                offset: int) -> np.ndarray:
    """The tensor stored at `blob[offset:offset+size]`, little-endian, row-major."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"{where}.parameters.binary_data_size", size,
                   "It must be a byte count (an integer >= 0).",
                   "Send the number of bytes of this input in the binary data.")
    count = math.prod(shape)
    expected = count * meta.dtype.itemsize
    if size != expected:
        raise _bad(f"{where}.parameters.binary_data_size", size,
                   f"Shape {shape} of {meta.datatype} ({meta.dtype.itemsize} bytes per value) "
                   f"takes {expected} bytes.",
                   "Send exactly the tensor's bytes (little-endian, row-major) and their count.")
    if offset + size > len(blob):
        raise _bad(f"{where}.parameters.binary_data_size", size,
                   f"This input's bytes would run from byte {offset} to {offset + size} of the "
                   f"binary data, but only {len(blob)} bytes follow the JSON header.",
                   "Append every binary input's bytes after the JSON header, in the order of "
                   "'inputs', and set the header length to the JSON header's length.")
    if meta.datatype == "BOOL":
        raw = np.frombuffer(blob, np.uint8, count, offset)
        if raw.max() > 1:
            raise _bad(f"{where} binary data", int(raw.max()), "BOOL values are one byte, 0 or 1.",
                       "Send false as 0 and true as 1.")
    array = np.frombuffer(blob, meta.dtype.newbyteorder("<"), count, offset)
    return array.astype(meta.dtype, copy=False).reshape(shape)


def parse_infer_request(
    body: bytes | str | dict[str, Any], inputs: list[InputMeta], max_instances: int,
    binary_data: bytes | None = None,
) -> dict[str, np.ndarray]:
    """Validate a V2 inference request and return its tensors.

    Args:
        body: the raw JSON (the JSON header of a binary request), or an already decoded object.
        inputs: the model's inputs (batch dimension -1, other dimensions fixed).
        max_instances: the largest number of instances (dimension 0) one request may carry.
        binary_data: the bytes after the JSON header of a binary request; None for all-JSON.

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
    offset = 0  # into binary_data: binary inputs follow each other in the order of `inputs`
    for i, entry in enumerate(entries):
        where = f"inputs[{i}]"
        if not isinstance(entry, dict):
            raise _bad(where, entry, "Each input must be a JSON object.",
                       'Send {"name", "shape", "datatype", "data"}.')
        parameters = _check_parameters(f"{where}.parameters", entry.get("parameters", {}),
                                       _INPUT_PARAMETERS)
        binary = "binary_data_size" in parameters
        required = ("name", "shape", "datatype") + (() if binary else ("data",))
        missing_keys = [k for k in required if k not in entry]
        unknown_keys = sorted(set(entry) - set(_INPUT_KEYS))
        if missing_keys or unknown_keys:
            raise _bad(f"{where} keys", sorted(entry),
                       f"An input has keys {list(_INPUT_KEYS[:3])} and 'data' (or "
                       "'parameters': {'binary_data_size': ...} for binary data); "
                       f"missing {missing_keys}, unknown {unknown_keys}.",
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
        if not binary:
            tensors[name] = _to_array(where, entry["data"], shape, meta)
            continue
        if "data" in entry:
            raise _bad(f"{where} keys", sorted(entry),
                       "An input carries either 'data' or binary data, not both.",
                       "Remove 'data' or parameters.binary_data_size.")
        if binary_data is None:
            raise _bad(f"{where}.parameters.binary_data_size", parameters["binary_data_size"],
                       f"Binary data needs the {HEADER_LENGTH} header (the JSON header's length), "
                       "with the tensor bytes after the JSON.",
                       "Send the header, or send the values as 'data' instead.")
        size = parameters["binary_data_size"]
        tensors[name] = _from_bytes(where, size, shape, meta, binary_data, offset)
        offset += size
    missing = [name for name in by_name if name not in tensors]
    if missing:
        raise _bad("inputs", [e.get("name") for e in entries],
                   f"The model needs every input; missing {missing}.", "Add the missing inputs.")
    if binary_data is not None and offset != len(binary_data):
        raise _bad("the binary data's length", len(binary_data),
                   f"The inputs' binary_data_size add up to {offset} bytes, and every byte "
                   "after the JSON header must belong to an input.",
                   f"Send only the inputs' bytes after the JSON header, and set {HEADER_LENGTH} "
                   "to the JSON header's length.")
    counts = {name: int(t.shape[0]) for name, t in tensors.items()}
    if len(set(counts.values())) > 1:
        raise _bad("the inputs' shape[0]", counts,
                   "All inputs must carry the same number of instances.",
                   "Send the same n as shape[0] of every input.")
    return tensors


def output_selection(body: dict[str, Any], output_names: list[str]) -> dict[str, bool]:
    """The outputs a decoded request asks for, each with whether to send it as binary data.

    Every output is sent when the request names none. An output is binary when its own
    ``parameters.binary_data`` says so, else when the request's
    ``parameters.binary_data_output`` does (as Triton decides it).

    Returns:
        Output name -> binary?, in the order the request names them.

    Raises:
        ProtocolError: `outputs` is not a list of ``{"name": ..., "parameters": ...}`` objects
            naming real outputs once each.
    """
    default = bool(body.get("parameters", {}).get("binary_data_output", False))
    wanted = body.get("outputs")
    if wanted is None:
        return {name: default for name in output_names}
    entries = wanted if isinstance(wanted, list) else []
    names = [o.get("name") for o in entries
             if isinstance(o, dict) and set(o) <= {"name", "parameters"}]
    if (not names or len(names) != len(wanted) or len(set(names)) != len(names)
            or not all(n in output_names for n in names)):
        raise _bad("outputs", wanted, f'It must be a list of {{"name": ...}} (plus optional '
                   f'"parameters") naming each of {output_names} at most once.',
                   "Fix the names, or leave 'outputs' out to get every output.")
    selection = {}
    for i, entry in enumerate(entries):
        where = f"outputs[{i}].parameters"
        flag = _check_parameters(where, entry.get("parameters", {}), _OUTPUT_PARAMETERS).get(
            "binary_data", default)
        if not isinstance(flag, bool):
            raise _bad(f"{where}.binary_data", flag, "It must be true or false.",
                       "Send true for raw bytes after the JSON header, false for JSON data.")
        selection[entry["name"]] = flag
    return selection


def requested_outputs(body: dict[str, Any], output_names: list[str]) -> list[str]:
    """The output names a decoded request asks for (all of them when it names none).

    Raises:
        ProtocolError: as `output_selection`.
    """
    return list(output_selection(body, output_names))


def _output_entry(name: str, array: np.ndarray, binary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "shape": list(array.shape),
                             "datatype": v2_datatype(array.dtype)}
    if binary:
        entry["parameters"] = {"binary_data_size": int(array.nbytes)}
    else:
        entry["data"] = np.asarray(array).ravel().tolist()
    return entry


def format_infer_response(
    model_name: str, outputs: dict[str, np.ndarray], request_id: str | None = None,
    binary_outputs: Collection[str] = (),
) -> dict[str, Any]:
    """A V2 inference response (or the JSON header of a binary one).

    Args:
        model_name: the served model's name.
        outputs: output name -> array (any supported numpy dtype).
        request_id: the request's `id`, echoed when given.
        binary_outputs: outputs described by ``parameters.binary_data_size`` instead of
            ``data``; their bytes go after the JSON header (see `serving.v2.wire`).

    Returns:
        The response object; each JSON output's data is flattened in row-major order.
    """
    response: dict[str, Any] = {"model_name": model_name}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [
        _output_entry(name, array, name in binary_outputs) for name, array in outputs.items()
    ]
    return response
