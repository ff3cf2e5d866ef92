"""The Open Inference Protocol (KServe V2 REST): parse and validate an inference request.

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

One input's shape and values: `serving.v2.tensors`; the outputs asked for and the response:
`serving.v2.response`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from serving.v2.tensors import array_from_bytes, check_shape, to_array
from serving.v2.types import HEADER_LENGTH, InputMeta
from serving.v2.types import bad as _bad

_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
# As sets, built once: the checks below run on every request.
_REQUEST_KEY_SET, _INPUT_KEY_SET = frozenset(_REQUEST_KEYS), frozenset(_INPUT_KEYS)
#: Parameters we understand, per level; anything else is refused rather than silently ignored.
_REQUEST_PARAMETERS = ("binary_data_output",)
_INPUT_PARAMETERS = ("binary_data_size",)

__all__ = ["decode_body", "parse_infer_request", "tensors_of"]


def decode_body(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Decode a request body to a JSON object and check its top-level keys.

    Strict JSON (RFC 8259): NaN and Infinity are not JSON numbers, so a body holding them is
    refused (send such values as binary data).

    Raises:
        ProtocolError: malformed JSON, a non-object body, an unknown key, a wrong `id` or
            `parameters` type, or a request parameter this server does not understand.
    """
    if isinstance(body, (bytes, bytearray, str)):
        # orjson: about a tenth of the json module's time on a request's floats (the replica's
        # largest cost per JSON request after Serve's own); the same JSON, stricter (no NaN).
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            text = body
            if isinstance(body, (bytes, bytearray)):
                try:
                    text = bytes(body).decode("utf-8")
                except UnicodeDecodeError as utf:
                    raise _bad("the request body", bytes(body)[:40], f"It is not UTF-8 ({utf.reason}).",
                               "Send UTF-8 encoded JSON.") from None
            raise _bad("the request body", text, f"It is not valid JSON ({exc}).",
                       'Send a JSON object such as {"inputs": [{"name": ..., "shape": ..., '
                       '"datatype": ..., "data": [...]}]}.') from None
    if not isinstance(body, dict):
        raise _bad("the request body", body, "It must be a JSON object.",
                   'Wrap the request as {"inputs": [...]}.')
    if not _REQUEST_KEY_SET.issuperset(body):
        raise _bad("the request keys", sorted(set(body) - _REQUEST_KEY_SET), f"Allowed keys: {list(_REQUEST_KEYS)}.",
                   "Remove the unknown keys.")
    if "id" in body and not isinstance(body["id"], str):
        raise _bad("id", body["id"], "The request id must be a string.", 'Send e.g. "id": "42".')
    check_parameters("parameters", body.get("parameters", {}), _REQUEST_PARAMETERS)
    flag = body.get("parameters", {}).get("binary_data_output", False)
    if not isinstance(flag, bool):
        raise _bad("parameters.binary_data_output", flag, "It must be true or false.",
                   "Send true to get every output as binary data, or leave it out.")
    return body


def check_parameters(where: str, parameters: object, allowed: tuple[str, ...]) -> dict:
    """A `parameters` object holding only keys we understand (a typo must not pass silently)."""
    if not isinstance(parameters, dict):
        raise _bad(where, parameters, "It must be a JSON object.",
                   "Send an object or leave it out.")
    if parameters and not set(allowed).issuperset(parameters):
        raise _bad(f"{where} keys", sorted(set(parameters) - set(allowed)), f"This server understands only {list(allowed)} here.",
                   "Remove the other keys.")
    return parameters


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
    return tensors_of(decode_body(body), inputs, max_instances, binary_data)


def tensors_of(request: dict[str, Any], inputs: list[InputMeta], max_instances: int,
               binary_data: bytes | None = None) -> dict[str, np.ndarray]:
    """`parse_infer_request` on a request `decode_body` has already decoded and checked."""
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
        parameters = check_parameters(f"{where}.parameters", entry.get("parameters", {}),
                                       _INPUT_PARAMETERS)
        binary = "binary_data_size" in parameters
        required = ("name", "shape", "datatype") + (() if binary else ("data",))
        missing_keys = [k for k in required if k not in entry]
        unknown_keys = [] if _INPUT_KEY_SET.issuperset(entry) else sorted(set(entry) - _INPUT_KEY_SET)
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
        shape = check_shape(where, entry["shape"], meta, max_instances)
        if not binary:
            tensors[name] = to_array(where, entry["data"], shape, meta)
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
        tensors[name] = array_from_bytes(where, size, shape, meta, binary_data, offset)
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
