"""One V2 input tensor of an inference request, checked against the model's input: its shape
(`check_shape`), and its values from JSON ``data`` (`to_array`) or from the binary data after
the JSON header (`array_from_bytes`). Used by `serving.v2.parse`.

Pure: no Ray, no ONNX Runtime. Every problem raises `ProtocolError` (400) naming the field.
"""

from __future__ import annotations

import math

import numpy as np

from serving.v2.types import InputMeta
from serving.v2.types import bad as _bad


def check_shape(where: str, shape: object, meta: InputMeta, max_instances: int) -> list[int]:
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


def to_array(where: str, data: object, shape: list[int], meta: InputMeta) -> np.ndarray:
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


def array_from_bytes(where: str, size: object, shape: list[int], meta: InputMeta, blob: bytes,
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
