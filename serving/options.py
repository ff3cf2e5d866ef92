"""What a Serve config serves and how it is exposed, besides the trial's configuration: the
model file (`ServedModel`), a gpu replica's GPU share and providers (`GpuServing`), and the
deployment's host, port, limits and update policy (`ServingOptions`).

Plain frozen dataclasses, no Ray: `serving.serve_config.make_serve_config` turns them, with a
`TrialConfig`, into the Serve config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServedModel:
    """The model file a deployment serves.

    Attributes:
        name: name in the endpoint URL, /v2/models/NAME/infer.
        path: absolute path of the .onnx file (the chosen precision variant).
        input_shapes: per-instance shapes for inputs whose non-batch dims are dynamic.
    """

    name: str
    path: str
    input_shapes: Mapping[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuServing:
    """How the replicas of a gpu trial hold their GPU: `num_gpus` each (1, or 1/k when k share
    one), ONNX Runtime `providers` in order (the trial's backend)."""

    num_gpus: float
    providers: tuple[str, ...]


@dataclass(frozen=True)
class ServingOptions:
    """How the deployment is exposed and bounded (everything but the trial's configuration).

    Attributes:
        host: interface the HTTP proxy binds; loopback unless you mean to expose the model.
        port: HTTP port.
        app_name: the Serve application's name.
        batch_wait_timeout_s: longest wait for a batch to fill.
        request_timeout_s: end-to-end time-out of an HTTP request (Ray answers 408), and the
            longest a replica waits for a request body.
        max_ongoing_requests: requests one replica takes at once; None: 2 x batch_size.
        max_queued_requests: requests a replica holds when it is full before it answers 503;
            None: 4 x max_ongoing_requests, at least 64.
        graceful_shutdown_timeout_s: how long a stopping replica may finish its requests;
            None: request_timeout_s.
        max_surge_percent: extra replicas, in percent of the replicas, an update may start
            before stopping old ones (100: a whole new set starts beside the old one).
        max_body_bytes: largest request body (413 above it); None derives it from the model.
        retry_after_s: the ``Retry-After`` header of a 503 (overloaded) response.
        access_log: Serve's per-request access log; off by default, as writing it cost about 6%
            of a replica's CPU per request for a small model here (errors are still logged).
        gpu: for a gpu trial, each replica's GPU share and ONNX Runtime providers (from the
            trial's record); None for a cpu trial.
        auth_token_sha256: SHA-256 hex digest of the bearer token the V2 routes require
            (`serving.auth`); None: no token.
        autoscaling_config: Ray Serve's ``autoscaling_config`` for the deployment (derived by
            `tuner.deploy.autoscale`), written instead of a fixed ``num_replicas``; None: the
            trial's replicas, fixed.
        shadow_fraction: share of live instances each replica also runs through the fp32 model
            (`serving.shadow`, top-1 agreement); 0: no shadow.
        shadow_model_path: the fp32 variant's .onnx file (absolute); required with a fraction > 0.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    app_name: str = "tuner"
    batch_wait_timeout_s: float = 0.005
    request_timeout_s: float = 30.0
    max_ongoing_requests: int | None = None
    max_queued_requests: int | None = None
    graceful_shutdown_timeout_s: float | None = None
    max_surge_percent: int = 100
    max_body_bytes: int | None = None
    retry_after_s: float = 1.0
    access_log: bool = False
    gpu: GpuServing | None = None
    auth_token_sha256: str | None = None
    autoscaling_config: Mapping[str, Any] | None = None
    shadow_fraction: float = 0.0
    shadow_model_path: str | None = None
