"""One V2 inference request of a load, as `serving.loadgen` and `serving.client` send it: the
seeded request bodies, what every request of a load looks like (`RequestSpec`), and checking one
answer (`check_answer`: one output row per instance, or a failure by kind). `serving.transfers`
sends them.

No Ray import: numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from serving.auth import BearerToken
from serving.v2.wire import ResponseError, decode_infer_response, encode_infer_request
from tuner.errors import field_error
from tuner.models.data import integer_input

Mode = Literal["offline", "server"]
_PAYLOADS = 8  # distinct request bodies, cycled (built once: encoding is not part of the load)


class InputLike(Protocol):
    """Anything with a name, a per-instance shape and a numpy dtype, e.g. `InputSpec` or
    `InputMeta` (a leading -1, the batch dimension, is dropped)."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def dtype(self) -> Any: ...


@dataclass(frozen=True)
class RequestSpec:
    url: str
    payloads: list[tuple[bytes, dict[str, str]]] = field(repr=False)  # large; the headers may hold a token
    instances: int
    mode: Mode
    concurrency: int
    target_rps: float
    timeout_s: float
    max_connections: int
    seed: int


@dataclass
class Outcome:
    ok: bool
    latency_s: float
    end: float
    status: int | None = None
    kind: str | None = None
    message: str = ""


def _per_instance(spec: InputLike) -> tuple[list[int], np.dtype]:
    shape = [int(d) for d in spec.shape]
    if shape and shape[0] == -1:  # InputMeta: the batch dimension first
        shape = shape[1:]
    if any(d < 1 for d in shape):
        raise field_error(f"the shape of input {spec.name!r}", list(spec.shape),
                          "A per-instance shape has fixed sizes >= 1.",
                          "Give the shape of one instance, without the batch dimension.")
    return shape, np.dtype(spec.dtype)


def make_payloads(inputs: Sequence[InputLike], instances: int, binary: bool,
              seed: int) -> list[tuple[bytes, dict[str, str]]]:
    """Seeded request bodies: normal floats; integers and booleans as tuner.models.data.integer_input
    makes them (valid ids, masks on, type ids 0)."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(_PAYLOADS):
        tensors = {}
        for spec in inputs:
            shape, dtype = _per_instance(spec)
            full = (instances, *shape)
            if dtype == np.bool_ or dtype.kind in "iu":
                tensors[spec.name] = integer_input(spec.name, dtype, full, rng)
            else:
                tensors[spec.name] = rng.standard_normal(full).astype(dtype)
        encoded = encode_infer_request(tensors, binary=binary, binary_outputs=binary)
        bodies.append((encoded.body, encoded.headers))
    return bodies


def check_answer(spec: RequestSpec, status: int, content: bytes, header_length: str | None, t0: float,
                 end: float) -> Outcome:
    """The outcome of one answered request: a 200 with one output row per instance sent is a
    success; any other status, or a body that does not follow the protocol, a failure by kind.
    Latency is from `t0` (the send, or the scheduled arrival) to `end`."""
    if status != 200:
        text = content[:200].decode("utf-8", "replace")
        return Outcome(False, end - t0, end, status, "http_status", f"HTTP {status}: {text}")
    try:
        decoded = decode_infer_response(content, header_length)
    except ResponseError as exc:
        return Outcome(False, end - t0, end, None, "bad_response", str(exc))
    rows = {name: a.shape[0] if a.ndim else 0 for name, a in decoded.outputs.items()}
    if not rows or set(rows.values()) != {spec.instances}:
        return Outcome(False, end - t0, end, None, "bad_response",
                       f"expected {spec.instances} rows per output, got {rows}")
    return Outcome(True, end - t0, end)


def request_spec(url_base: str, model_name: str, inputs: Sequence[InputLike], mode: Mode,
                 batch_size: int, concurrency: int | None, target_rps: float | None, binary: bool,
                 seed: int, timeout_s: float, max_connections: int, instances: int | None = None,
                 auth_token: BearerToken | None = None) -> RequestSpec:
    """What every request of a load looks like. `instances` per request: `batch_size` in offline
    mode and 1 in server mode unless given; `auth_token`: sent as ``Authorization: Bearer``."""
    if mode not in ("offline", "server"):
        raise field_error("mode", mode, "The modes are 'offline' (closed loop, batches) and "
                          "'server' (Poisson arrivals, one instance each).", "Pick one.")
    if not inputs:
        raise field_error("inputs", inputs, "The model's inputs are needed to build requests.",
                          "Pass one (name, shape, dtype) per input.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise field_error("batch_size", batch_size, "It must be an integer >= 1.",
                          "Pass the deployed batch size.")
    if mode == "offline" and (not isinstance(concurrency, int) or concurrency < 1):
        raise field_error("concurrency", concurrency, "Offline mode keeps this many requests "
                          "in flight; it must be an integer >= 1.", "Pass e.g. 2 x replicas.")
    if mode == "server" and not (isinstance(target_rps, (int, float)) and target_rps > 0):
        raise field_error("target_rps", target_rps, "Server mode sends Poisson arrivals at this "
                          "rate; it must be > 0 requests per second.", "Pass e.g. 50.")
    if instances is None:
        instances = batch_size if mode == "offline" else 1
    elif isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise field_error("instances", instances, "It must be an integer >= 1.", "Pass e.g. 1.")
    payloads = make_payloads(inputs, instances, binary, seed)
    if auth_token is not None:
        payloads = [(body, {**headers, "Authorization": auth_token.authorization}) for body, headers in payloads]
    return RequestSpec(
        url=f"{url_base.rstrip('/')}/v2/models/{model_name}/infer",
        payloads=payloads, instances=instances,
        mode=mode, concurrency=concurrency or 1, target_rps=float(target_rps or 0),
        timeout_s=timeout_s, max_connections=max_connections, seed=seed,
    )
