"""The vocabulary of the Open Inference Protocol (KServe V2): datatypes, tensors, errors.

Pure: no Ray, no ONNX Runtime. `serving.v2.parse` parses requests with it, `serving.v2.wire`
frames bodies (JSON or binary) with it, and `serving.loadgen` builds requests with it.
"""

from __future__ import annotations

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

#: The HTTP header that gives the length of the JSON header of a binary request or response.
HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"

class ProtocolError(TunerError):
    """A request the client must fix; served as HTTP `status` with ``{"error": message}``."""

    status: int = 400


class UnknownModel(ProtocolError):
    """The request names a model this server does not serve (HTTP 404)."""

    status = 404


class PayloadTooLarge(ProtocolError):
    """The request body exceeds the server's limit (HTTP 413)."""

    status = 413


class UnsupportedMediaType(ProtocolError):
    """The request's content-type is neither V2 JSON nor V2 binary (HTTP 415)."""

    status = 415


class RequestTimeout(ProtocolError):
    """The request body did not arrive in time (HTTP 408)."""

    status = 408


def short(value: object, limit: int = 80) -> str:
    """repr() of `value`, cut so that a huge `data` list cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad(field_name: str, value: object, rule: str, fix: str) -> ProtocolError:
    """A ProtocolError in the house style: "Got X for Y. Rule. Fix."."""
    return ProtocolError(f"Got {short(value)} for {field_name}. {rule} {fix}")


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
