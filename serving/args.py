"""What the Serve config tells the application: its ``args`` (`ServeArgs`, what identifies it) and
the deployment's ``user_config`` (`ServeSettings`, what a replica changes in place), and the limits
derived from them. Pure pydantic: `serving.serve_config` writes the config from these without
importing the server application (Ray Serve, ONNX Runtime).

(No ``from __future__ import annotations``: Ray validates the Serve config's ``args`` with
`ServeArgs`, the type hint of `serving.app.build_app`.)
"""

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuner.config import PRECISIONS

IMPORT_PATH = "serving.app:build_app"
DEPLOYMENT_NAME = "ModelServer"
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


#: Queued requests per request a replica runs: 4 x max_ongoing_requests is about eight batches
#: waiting, a short wait, before the replica answers 503. On Serve's fast path (HAProxy, direct
#: ingress) each replica holds its own queue, so the bound is per replica.
QUEUE_FACTOR = 4
#: ... but never fewer than this: batch 1 alone gave 8, and a 0.2 s hiccup at 40 req/s (a new
#: version's start-up taking the CPU during a switch) then answered 503s.
QUEUE_MIN = 64


def max_ongoing_requests_for(batch_size: int) -> int:
    """Requests a replica accepts at once: one batch running while the next one fills."""
    return 2 * batch_size


def max_queued_requests_for(max_ongoing_requests: int) -> int:
    """Requests a replica holds while it runs `max_ongoing_requests`; more are answered 503 at once."""
    return max(QUEUE_MIN, QUEUE_FACTOR * max_ongoing_requests)


class ServeArgs(BaseModel):
    """The ``args`` of the application in the Serve config: what identifies it. Changing them
    starts new replicas; everything a replica can change in place is in `ServeSettings`."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1, description="Name in the URL: /v2/models/NAME/infer.")


class ServeSettings(BaseModel):
    """The deployment's ``user_config`` in the Serve config: what a running replica changes in place
    (Ray Serve calls `ModelServer.reconfigure` with it, no restart). Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(description="Absolute path to the .onnx file every replica loads.")
    precision: str = Field(description=f"Precision of the model file, one of {PRECISIONS}.")
    batch_size: int = Field(ge=1, description="Most instances per ONNX Runtime call and request.")
    threads_per_replica: int = Field(ge=1, description="ONNX Runtime intra-op threads per replica.")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="Longest wait for a batch to fill, in seconds."
    )
    input_shapes: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Per-instance shape (no batch dim) of inputs whose other dims are dynamic.",
    )
    max_body_bytes: int | None = Field(
        default=None, ge=1,
        description="Largest request body in bytes (HTTP 413 above it); null derives it from "
        "batch_size and the model's inputs, sized for JSON.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Longest time, in seconds, a replica spends on one request, body to answer "
        "(HTTP 408 after it); the same value as http_options.request_timeout_s, at which Ray Serve "
        "answers 408 itself: a backstop.",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Longest time, in seconds, a replica waits for a request body (HTTP 408 "
        "after it), so that slow uploads cannot hold a replica's request slots.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], min_length=1,
        description="ONNX Runtime execution providers, in order: CPUExecutionProvider (cpu trials, and gpu "
        "trials of the test backend), CUDAExecutionProvider or TensorrtExecutionProvider first (gpu). A replica "
        "refuses to start when its session does not get the first one (no silent fall-back to the CPU).",
    )
    auth_token_sha256: str | None = Field(
        default=None,
        description="SHA-256 hex digest (64 hex characters) of the bearer token every V2 route but "
        "/v2/health/live and /v2/health/ready requires (HTTP 401 without it); null: no token. Only the "
        "digest is stored, never the token: this config is shared, shown in Ray's dashboard and kept in the "
        "study. A replica hashes the token a request sends and compares digests in constant time. Written "
        "by tuner promote --auth-token-file (serving.auth).",
    )
    shadow_fraction: float = Field(
        default=0.0, ge=0, le=1,
        description="Share of live instances each replica also runs through the fp32 model (serving.shadow: "
        "top-1 agreement with fp32, counted in ray_tuner_infer_shadow_*); 0: no shadow. Written by tuner promote "
        "--shadow-fraction.",
    )
    shadow_model_path: str | None = Field(
        default=None,
        description="Absolute path to the fp32 variant's .onnx file the shadow compares with; required when "
        "shadow_fraction > 0.",
    )

    @field_validator("model_path")
    @classmethod
    def _absolute_onnx(cls, value: str) -> str:
        if not Path(value).is_absolute() or Path(value).suffix != ".onnx":
            raise ValueError(
                f"Got {value!r} for model_path. It must be an absolute path to an .onnx file, "
                "because replicas run in other working directories. Write the full path."
            )
        return value

    @field_validator("shadow_model_path")
    @classmethod
    def _absolute_shadow_onnx(cls, value: str | None) -> str | None:
        if value is not None and (not Path(value).is_absolute() or Path(value).suffix != ".onnx"):
            raise ValueError(
                f"Got {value!r} for shadow_model_path. It must be an absolute path to the fp32 variant's .onnx "
                "file, because replicas run in other working directories. Write the full path."
            )
        return value

    @model_validator(mode="after")
    def _shadow_needs_its_model(self) -> "ServeSettings":
        if self.shadow_fraction > 0 and self.shadow_model_path is None:
            raise ValueError(
                f"Got shadow_fraction {self.shadow_fraction} without shadow_model_path. The shadow compares the "
                "served model with the fp32 variant, so it needs that file. Set shadow_model_path to the fp32 "
                ".onnx file (tuner promote --shadow-fraction writes it), or set shadow_fraction to 0."
            )
        return self

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        known = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
        bad = [v for v in value if v not in known]
        if bad:
            raise ValueError(f"Got {bad} in providers. Use ONNX Runtime providers from {list(known)}.")
        return value

    @field_validator("auth_token_sha256", mode="before")
    @classmethod
    def _sha256_hex(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
            size = f"{len(value)} characters" if isinstance(value, str) else f"a {type(value).__name__}"
            raise ValueError(  # the value is not echoed: it may be a token pasted by mistake
                f"Got {size} for auth_token_sha256 (not shown). It must be the SHA-256 hex digest (64 hex "
                "characters) of the token, never the token itself. Regenerate the config with tuner promote "
                "--auth-token-file FILE.")
        return value.lower()

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"Got {value!r} for precision. Use one of {list(PRECISIONS)}.")
        return value
