"""The Ray Serve application: one ONNX model behind the Open Inference Protocol (V2 REST).

Ray Serve builds it from the Serve config with ``import_path: serving.app:build_app`` and the
config's ``args``, which Ray validates into `ServeArgs` from `build_app`'s type hint (for that
reason this module does not use ``from __future__ import annotations``: Ray needs the real
class in the signature, not a string).

Concurrent requests are batched by `@serve.batch`, counted in instances rather than requests,
so one ONNX Runtime call never sees more than `batch_size` instances.
"""

import asyncio
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Application, Deployment
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.protocol import (
    InputMeta,
    ProtocolError,
    TensorMeta,
    decode_body,
    format_infer_response,
    parse_infer_request,
    requested_outputs,
    v2_datatype,
)
import tuner
from tuner.config import PRECISIONS
from tuner.errors import TunerError, field_error
from tuner.evaluators.cpu import session_options

logger = logging.getLogger("ray.serve")

#: Input or output name -> array, first dimension the instances.
Tensors = dict[str, np.ndarray]

PLATFORM = "onnxruntime_onnx"
MODEL_VERSION = "1"

_ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({ort_name})": np.dtype(np_name)
    for ort_name, np_name in [
        ("float", "float32"), ("float16", "float16"), ("double", "float64"), ("bool", "bool"),
        ("int8", "int8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"),
        ("uint8", "uint8"), ("uint16", "uint16"), ("uint32", "uint32"), ("uint64", "uint64"),
    ]
}


class ServeArgs(BaseModel):
    """The ``args`` of the application in the Serve config; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1, description="Name in the URL: /v2/models/NAME/infer.")
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

    @field_validator("model_path")
    @classmethod
    def _absolute_onnx(cls, value: str) -> str:
        if not Path(value).is_absolute() or Path(value).suffix != ".onnx":
            raise ValueError(
                f"Got {value!r} for model_path. It must be an absolute path to an .onnx file, "
                "because replicas run in other working directories. Write the full path."
            )
        return value

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"Got {value!r} for precision. Use one of {list(PRECISIONS)}.")
        return value


def max_ongoing_requests_for(batch_size: int) -> int:
    """Requests a replica accepts at once: one batch running while the next one fills."""
    return 2 * batch_size


def require_model_file(model_path: str) -> Path:
    """The model file as a Path, or a TunerError that says how to get it back."""
    path = Path(model_path)
    if not path.is_file():
        raise field_error(
            "model_path", model_path, "The ONNX model file does not exist on this node.",
            "Re-run the tuner to export the model again, or point args.model_path in the Serve "
            "config at the .onnx file.",
        )
    return path


def load_session(args: ServeArgs) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with `threads_per_replica` intra-op threads."""
    options = session_options(args.threads_per_replica)  # the options the trial measured with
    return ort.InferenceSession(
        str(require_model_file(args.model_path)), options, providers=["CPUExecutionProvider"]
    )


def _client_dtype(ort_type: str, what: str) -> np.dtype:
    """The dtype clients see: float16 tensors are exchanged as float32."""
    if ort_type not in _ORT_TYPES:
        raise TunerError(f"Got type {ort_type} for {what}. Served types: {list(_ORT_TYPES)}.")
    dtype = _ORT_TYPES[ort_type]
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def describe_model(
    session: ort.InferenceSession, args: ServeArgs
) -> tuple[list[InputMeta], list[TensorMeta]]:
    """Client-facing input and output metadata, with dynamic per-instance dims resolved.

    Raises:
        TunerError: an input keeps a dynamic dim that `args.input_shapes` does not fix, an
            `input_shapes` entry names no input or contradicts the model, or dim 0 is fixed.
    """
    names = [i.name for i in session.get_inputs()]
    unknown = sorted(set(args.input_shapes) - set(names))
    if unknown:
        raise field_error("args.input_shapes", unknown, f"The model's inputs are {names}.",
                          "Remove or rename these entries.")
    inputs = []
    for node in session.get_inputs():
        dims = list(node.shape)
        # A fixed dim 0 only works as a batch of one: requests are concatenated along it.
        if not dims or (isinstance(dims[0], int) and (dims[0], args.batch_size) != (1, 1)):
            raise field_error(f"the first dimension of input {node.name!r}", dims,
                              "tuner batches along dimension 0, so it must be dynamic.",
                              "Export the model with a dynamic batch axis (dynamic_shapes).")
        given = args.input_shapes.get(node.name)
        per_instance = [d if isinstance(d, int) else -1 for d in dims[1:]]
        if given is not None:
            if len(given) != len(per_instance) or any(
                g < 1 or (p != -1 and g != p) for g, p in zip(given, per_instance)
            ):
                raise field_error(f"args.input_shapes[{node.name!r}]", given,
                                  f"The model's per-instance shape is {dims[1:]} (no batch dim).",
                                  "Give one positive size per dimension, matching fixed ones.")
            per_instance = list(given)
        if -1 in per_instance:
            raise field_error(f"the shape of input {node.name!r}", dims,
                              "Dimensions after the batch must be fixed to validate requests.",
                              f"Set args.input_shapes: {{{node.name}: [...]}} in the config.")
        dtype = _client_dtype(node.type, f"input {node.name!r}")
        inputs.append(InputMeta(node.name, v2_datatype(dtype), [-1, *per_instance]))
    outputs = [
        TensorMeta(o.name, v2_datatype(_client_dtype(o.type, f"output {o.name!r}")),
                   [-1] + [d if isinstance(d, int) else -1 for d in o.shape[1:]])
        for o in session.get_outputs()
    ]
    return inputs, outputs


def _instances(request: Tensors) -> int:
    return int(next(iter(request.values())).shape[0])


def _count_instances(requests: list[Tensors]) -> int:
    """Batch size in instances, so one session call never exceeds batch_size instances."""
    return sum(_instances(r) for r in requests)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


fastapi_app = FastAPI(title="tuner: Open Inference Protocol (V2)")


@fastapi_app.exception_handler(ProtocolError)
async def _protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
    return _error(400, str(exc))


@fastapi_app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = str(exc.detail)
    if message == HTTPStatus(exc.status_code).phrase:  # FastAPI's own "Not Found" etc.
        message = f"{message}: {request.method} {request.url.path}"
    return _error(exc.status_code, message)


class ModelServer:
    """One replica: an ONNX Runtime session behind the V2 REST routes.

    A plain class (constructible in tests); `ModelDeployment` is its Serve deployment.
    """

    def __init__(self, args: ServeArgs) -> None:
        """Load the session and set the batching limits.

        Args:
            args: the application's validated args.

        Raises:
            TunerError: the model file is missing or its inputs cannot be served.
        """
        self._args = args
        self._session: ort.InferenceSession | None = None
        session = load_session(args)
        self._inputs, self._outputs = describe_model(session, args)
        self._model_dtypes = {i.name: _ORT_TYPES[i.type] for i in session.get_inputs()}
        self._infer_batch.set_max_batch_size(args.batch_size)
        self._infer_batch.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        self._session = session

    def check_health(self) -> None:
        """Serve's replica health check: the session must be loaded."""
        if self._session is None:
            raise RuntimeError("The ONNX Runtime session is not loaded.")

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self._args.model_name or version not in (None, MODEL_VERSION):
            asked = repr(name) if version is None else f"{name!r} version {version!r}"
            raise StarletteHTTPException(
                404, f"Got unknown model {asked}. This server serves {self._args.model_name!r} "
                f"(version {MODEL_VERSION!r}). Use /v2/models/{self._args.model_name}/...")

    @fastapi_app.get("/v2")
    def server_metadata(self) -> dict[str, Any]:
        """V2 server metadata."""
        return {"name": "tuner", "version": tuner.__version__, "extensions": []}

    @fastapi_app.get("/v2/health/live")
    def live(self) -> dict[str, bool]:
        """V2 liveness: 200 while the replica answers at all."""
        return {"live": True}

    @fastapi_app.get("/v2/health/ready")
    def ready(self) -> JSONResponse:
        """V2 readiness: 200 once the ONNX Runtime session is loaded, else 503."""
        loaded = self._session is not None
        return JSONResponse(status_code=200 if loaded else 503, content={"ready": loaded})

    @fastapi_app.get("/v2/models/{name}")
    @fastapi_app.get("/v2/models/{name}/versions/{version}")
    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """V2 model metadata: tensors (-1 for the batch) plus precision and batch size."""
        self._check_model(name, version)
        return {
            "name": name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORM,
            "inputs": [meta.to_v2() for meta in self._inputs],
            "outputs": [meta.to_v2() for meta in self._outputs],
            "parameters": {"precision": self._args.precision, "batch_size": self._args.batch_size},
        }

    @fastapi_app.get("/v2/models/{name}/ready")
    @fastapi_app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(self, name: str, version: str | None = None) -> JSONResponse:
        """V2 model readiness; 404 for a model this server does not serve."""
        self._check_model(name, version)
        return self.ready()

    @fastapi_app.post("/v2/models/{name}/infer")
    @fastapi_app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        """V2 inference: 400 with {"error"} for a bad request, 404 for an unknown model."""
        self._check_model(name, version)
        body = decode_body(await request.body())
        tensors = parse_infer_request(body, self._inputs, self._args.batch_size)
        wanted = requested_outputs(body, [o.name for o in self._outputs])
        try:
            results = await self._infer_batch(tensors)
        except Exception as exc:  # the V2 error format, not a bare 500 page
            logger.exception("Inference failed")
            return _error(500, f"Inference failed: {type(exc).__name__}: {exc}")
        return JSONResponse(
            format_infer_response(name, {k: results[k] for k in wanted}, body.get("id"))
        )

    # The real limits are set per replica in __init__; decorator arguments are fixed at import.
    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0, batch_size_fn=_count_instances)
    async def _infer_batch(self, requests: list[Tensors]) -> list[Tensors]:
        # A worker thread keeps the event loop (health checks, request parsing) responsive.
        return await asyncio.to_thread(self._run_batch, requests)

    def _run_batch(self, requests: list[Tensors]) -> list[Tensors]:
        """Concatenate the requests' instances, run them in chunks of batch_size, split back."""
        counts = [_instances(r) for r in requests]
        merged = {
            name: np.concatenate([r[name] for r in requests]).astype(dtype, copy=False)
            for name, dtype in self._model_dtypes.items()
        }
        names = [o.name for o in self._outputs]
        pieces: dict[str, list[np.ndarray]] = {n: [] for n in names}
        total, step = sum(counts), self._args.batch_size
        for start in range(0, total, step):
            chunk = {n: a[start : start + step] for n, a in merged.items()}
            for n, out in zip(names, self._session.run(names, chunk)):
                if out.ndim == 0 or out.shape[0] != min(step, total - start):
                    raise RuntimeError(
                        f"Output {n!r} has shape {out.shape}: not one row per instance.")
                pieces[n].append(out.astype(np.float32) if out.dtype == np.float16 else out)
        full = {n: np.concatenate(p) for n, p in pieces.items()}
        bounds = np.cumsum(counts)[:-1]
        split = {n: np.split(a, bounds) for n, a in full.items()}
        return [{n: split[n][i] for n in names} for i in range(len(requests))]


#: The Serve deployment; its name ("ModelServer") is the one the Serve config refers to.
ModelDeployment: Deployment = serve.deployment(serve.ingress(fastapi_app)(ModelServer))


def build_app(args: ServeArgs) -> Application:
    """The typed application builder Ray Serve calls with the config's ``args``.

    Defaults for replica options are derived from `args`; the Serve config's ``deployments``
    entry overrides them.

    Raises:
        TunerError: the model file is missing (checked here so the deploy fails at once).
    """
    require_model_file(args.model_path)
    return ModelDeployment.options(
        max_ongoing_requests=max_ongoing_requests_for(args.batch_size),
        ray_actor_options={"num_cpus": args.threads_per_replica},
    ).bind(args)
