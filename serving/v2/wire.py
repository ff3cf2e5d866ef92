"""V2 bodies on the wire: content types, the size limit, JSON or binary framing, both ways.

Pure: no Ray, no ONNX Runtime. A binary body (the binary tensor data extension) is a JSON
header followed by raw tensor bytes; the HTTP header ``Inference-Header-Content-Length`` gives
the JSON header's length, and every binary tensor's entry says its byte count in
``parameters.binary_data_size``. Tensor bytes are little-endian and row-major, in the order of
the tensors in the JSON header.

The server (`serving.replica`) uses `check_content_type`, `max_body_bytes_for`, `body_too_large`,
`parse_request` and `encode_infer_response`; clients (`serving.loadgen`, tests) use
`encode_infer_request` and `decode_infer_response`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from serving.v2.parse import decode_body, tensors_of
from serving.v2.response import format_infer_response, output_selection
from serving.v2.types import (
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    V2_TO_NUMPY,
    InputMeta,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedMediaType,
    bad,
    v2_datatype,
)
from tuner.errors import TunerError

#: Worst case for one value written as JSON text: a float64 repr (up to 24 characters), a
#: separator and some indentation. Binary data (at most 8 bytes per value) is always smaller.
JSON_BYTES_PER_VALUE = 40
#: Room for the JSON around the values: names, shapes, ids, whitespace.
HEADER_ALLOWANCE_BYTES = 64 * 1024


class ResponseError(TunerError):
    """A response that does not follow the V2 protocol (raised on the client side)."""


@dataclass(frozen=True)
class Encoded:
    """A body ready to send, with the headers that describe it.

    Attributes:
        body: the bytes to send.
        headers: ``content-type``, plus ``Inference-Header-Content-Length`` for a binary body.
    """

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class InferRequest:
    """A validated V2 inference request.

    Attributes:
        tensors: input name -> array ``[n, *per_instance_shape]`` of the input's dtype.
        outputs: requested output name -> whether to send it as binary data, in order.
        id: the request's `id`, echoed in the response.
    """

    tensors: dict[str, np.ndarray]
    outputs: dict[str, bool]
    id: str | None = None


@dataclass(frozen=True)
class InferResponse:
    """A decoded V2 inference response: output name -> array, JSON and binary outputs alike."""

    model_name: str
    outputs: dict[str, np.ndarray]
    id: str | None = None


def check_content_type(content_type: str | None, header_length: str | None) -> None:
    """Accept V2 JSON (content-type absent or application/json) or V2 binary.

    The ``Inference-Header-Content-Length`` header, not the content-type, says whether a body
    is binary (as in Triton); application/octet-stream is accepted only with that header.

    Raises:
        UnsupportedMediaType: any other content-type (HTTP 415).
        ProtocolError: application/octet-stream without the header (HTTP 400).
    """
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in ("", JSON_TYPE, BINARY_TYPE):
        raise UnsupportedMediaType(
            f"Got {content_type!r} for the content-type header. V2 inference takes {JSON_TYPE}, "
            f"or {BINARY_TYPE} with the {HEADER_LENGTH} header (binary tensor data). Send "
            f"'content-type: {JSON_TYPE}' (curl -d sends application/x-www-form-urlencoded "
            f"unless you add -H 'content-type: {JSON_TYPE}')."
        )
    if media == BINARY_TYPE and header_length is None:
        raise bad("the content-type header", content_type,
                  f"A binary body starts with a JSON header whose length the {HEADER_LENGTH} "
                  "header gives.", f"Send that header, or send JSON as {JSON_TYPE}.")


def max_body_bytes_for(inputs: Sequence[InputMeta], max_instances: int) -> int:
    """The largest body a request of `max_instances` instances needs, written as JSON.

    Args:
        inputs: the model's inputs.
        max_instances: the most instances per request (the deployed batch size).

    Returns:
        Bytes: values per request x `JSON_BYTES_PER_VALUE` + `HEADER_ALLOWANCE_BYTES`.
    """
    values = sum(math.prod(meta.shape[1:]) for meta in inputs)
    return max_instances * values * JSON_BYTES_PER_VALUE + HEADER_ALLOWANCE_BYTES


def body_too_large(size: int, limit: int, declared: bool) -> PayloadTooLarge:
    """The 413 error for a body of `size` bytes (from content-length if `declared`)."""
    got = f"a body of {size} bytes" if declared else f"a body of more than {size} bytes"
    return PayloadTooLarge(
        f"Got {got} for this request. This server takes at most {limit} bytes per request "
        "(args.max_body_bytes; by default derived from batch_size and the size of one "
        "instance written as JSON). Send at most batch_size instances per request, send "
        f"binary tensors ({HEADER_LENGTH}), or raise args.max_body_bytes in the Serve config."
    )


def split_body(body: bytes, header_length: str | int | None) -> tuple[bytes, bytes | None]:
    """Split a body into its JSON header and the binary data after it.

    Args:
        body: the raw HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header's value, or None when
            the body is all JSON.

    Returns:
        (JSON header, binary data); the binary data is None for an all-JSON body.

    Raises:
        ProtocolError: the header is not an integer from 1 to the body's length.
    """
    if header_length is None:
        return body, None
    try:
        length = int(header_length)
    except (TypeError, ValueError):
        length = -1
    if isinstance(header_length, bool) or not 1 <= length <= len(body):
        raise bad(f"the {HEADER_LENGTH} header", header_length,
                  "It must be the byte length of the JSON header at the start of the body, "
                  f"an integer from 1 to the body's length ({len(body)} bytes).",
                  "Send len(json_header_bytes), or leave the header out for an all-JSON body.")
    return body[:length], body[length:]


def parse_request(body: bytes, header_length: str | None, inputs: list[InputMeta],
                  output_names: list[str], max_instances: int) -> InferRequest:
    """Parse a V2 inference request body, JSON or binary.

    Args:
        body: the raw HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header, None if absent.
        inputs: the model's inputs.
        output_names: the model's outputs.
        max_instances: the most instances per request.

    Raises:
        ProtocolError: anything the client must fix, named and explained.
    """
    header, binary_data = split_body(body, header_length)
    request = decode_body(header)
    tensors = tensors_of(request, inputs, max_instances, binary_data)
    return InferRequest(tensors, output_selection(request, output_names), request.get("id"))


def _little_endian_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _frame(header: dict[str, Any], blobs: list[bytes]) -> Encoded:
    """JSON alone, or JSON header + bytes with the header length when there are blobs."""
    text = orjson.dumps(header)  # compact, as json.dumps with separators (",", ":"), in a tenth of the time
    if not blobs:
        return Encoded(text, {"content-type": JSON_TYPE})
    return Encoded(text + b"".join(blobs),
                   {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(text))})


def encode_infer_response(model_name: str, outputs: Mapping[str, np.ndarray],
                          request_id: str | None = None,
                          binary_outputs: Collection[str] = ()) -> Encoded:
    """A V2 response body: JSON, or JSON header + bytes when any output is binary."""
    header = format_infer_response(model_name, dict(outputs), request_id, binary_outputs)
    blobs = [_little_endian_bytes(a) for name, a in outputs.items() if name in binary_outputs]
    return _frame(header, blobs)


def encode_infer_request(tensors: Mapping[str, np.ndarray], *, binary: bool = True,
                         binary_outputs: bool = False, request_id: str | None = None) -> Encoded:
    """A V2 request body for `tensors` (input name -> array, first dim the instances).

    Args:
        tensors: the inputs.
        binary: send the tensors as binary data (compact, fast) rather than JSON lists.
        binary_outputs: ask for every output as binary data (``binary_data_output``).
        request_id: the request's `id`.
    """
    header: dict[str, Any] = {} if request_id is None else {"id": request_id}
    if binary_outputs:
        header["parameters"] = {"binary_data_output": True}
    entries, blobs = [], []
    for name, array in tensors.items():
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape),
                                 "datatype": v2_datatype(array.dtype)}
        if binary:
            blobs.append(_little_endian_bytes(array))
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    header["inputs"] = entries
    return _frame(header, blobs)


def decode_infer_response(body: bytes, header_length: str | int | None = None) -> InferResponse:
    """Decode a V2 response body, JSON or binary (as the server's headers describe it).

    Raises:
        ResponseError: the body does not follow the protocol.
    """
    try:
        header, blob = split_body(body, header_length)
        response = orjson.loads(header)
        offset, outputs = 0, {}
        for entry in response["outputs"]:
            dtype, shape = V2_TO_NUMPY[entry["datatype"]], [int(d) for d in entry["shape"]]
            if "data" in entry:
                outputs[entry["name"]] = np.asarray(entry["data"], dtype=dtype).reshape(shape)
                continue
            size = int(entry["parameters"]["binary_data_size"])
            expected = math.prod(shape) * dtype.itemsize
            if blob is None or size != expected or offset + size > len(blob):
                raise ValueError(f"output {entry['name']!r} claims {size} bytes for shape {shape} "
                                 f"of {entry['datatype']} at byte {offset} of the binary data")
            array = np.frombuffer(blob, dtype.newbyteorder("<"), math.prod(shape), offset)
            outputs[entry["name"]] = array.astype(dtype).reshape(shape)
            offset += size
        if blob is not None and offset != len(blob):
            raise ValueError(f"{len(blob) - offset} bytes of binary data belong to no output")
        return InferResponse(response["model_name"], outputs, response.get("id"))
    except (ProtocolError, ValueError, KeyError, TypeError) as exc:
        raise ResponseError(
            f"Got a response that is not a V2 inference response ({type(exc).__name__}: {exc}): "
            f"{body[:120]!r}. Check that the URL is a V2 server's /infer endpoint."
        ) from None
