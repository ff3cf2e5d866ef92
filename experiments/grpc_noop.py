"""A no-op gRPC service on Ray Serve: the floor of a gRPC ingress (experiments/grpc_floor.py).

Unary `tuner.Noop/Call`: bytes in, a fixed answer out, nothing decoded (no generated protobuf
code: the handler takes and returns raw bytes), so what it serves is what the gRPC path costs.
Serve's proxies and replicas import `add_noop_servicer` from `grpc_options`.
"""

import grpc
from ray import serve

SERVICE, METHOD = "tuner.Noop", "Call"
#: The answer's bytes: as long as a one-row V2 binary answer's tensor (a few bytes of header).
ANSWER = b"\x0a\x04noop\x12\x04\x00\x00\x00\x00"


class Raw(bytes):
    """Bytes that Serve's replica can send back as they are (it calls SerializeToString)."""

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return bytes(self)


def add_noop_servicer(servicer, server) -> None:
    """The `add_..._to_server` function Serve's gRPC servers call (with a stand-in servicer)."""
    handler = grpc.unary_unary_rpc_method_handler(servicer.Call)  # no (de)serializers: raw bytes
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))


@serve.deployment(max_ongoing_requests=64)
class GrpcNoop:
    async def Call(self, request: bytes) -> Raw:  # noqa: N802 (the RPC's name)
        return Raw(ANSWER)


app = GrpcNoop.bind()
