"""One replica of the Ray Serve application (`serving.app`): an ONNX model behind the Open
Inference Protocol (V2 REST), as a plain class (`ModelServer`, constructible in tests).

Concurrent requests are batched by `serving.batcher` (not Ray Serve's ``@serve.batch``: see
there why), counted in instances rather than requests, so one ONNX Runtime call never sees more
than `batch_size` instances.

Requests are JSON or binary (the binary tensor data extension, `serving.v2.wire`). A replica
answers every problem with a V2 error body ``{"error": message}``: 400 for a bad request,
404 for an unknown model, 408 when the body does not arrive within ``body_timeout_s`` or the
answer is not ready within ``request_timeout_s`` (both in user_config; Ray Serve itself answers
408 in text/plain at ``http_options.request_timeout_s``, the same value, and this deadline is the
backstop for when it does not), 413 for a body over the limit (checked from content-length before reading, and
while reading), 415 for a content-type that is neither V2 JSON nor V2 binary, 500 if inference
fails. Overload is Ray Serve's (configured in `serving.serve_config`): it answers 503 when
``max_queued_requests`` are waiting, with a text/plain body (Ray offers no JSON form).

Authentication (optional, `serving.auth`): when user_config has ``auth_token_sha256`` (``tuner
promote --auth-token-file FILE``), every route but ``/v2/health/live`` and ``/v2/health/ready``
requires ``Authorization: Bearer <token>``; a request without it or with another token gets 401
with ``{"error": message}`` and ``WWW-Authenticate: Bearer``, before anything else is checked
(so an unauthenticated caller learns nothing about the model, not even a 404). The health routes
stay open because Kubernetes probes and load balancers call them without credentials. The
replica knows only the token's SHA-256 digest, and compares digests in constant time.
Application metrics: see `serving.metrics`. The optional fp32 shadow (accuracy in production,
``user_config.shadow_fraction``): see `serving.shadow`.
"""

import asyncio
import logging
import time
from typing import Any

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import tuner
from serving.args import ServeArgs, ServeSettings
from serving.auth import CHALLENGE, OPEN_PATHS, unauthorized_reason
from serving.batcher import Batcher
from serving.metrics import ServerMetrics
from serving.model import ORT_TYPES, count_instances, describe_model, load_session, run_batch
from serving.replica_http import NotFound, error_response, read_body
from serving.shadow import Shadow, shadow_for
from serving.v2.layouts import RequestParser
from serving.v2.types import HEADER_LENGTH, ProtocolError, UnknownModel
from serving.v2.wire import check_content_type, encode_infer_response, max_body_bytes_for
from tuner.errors import TunerError

__all__ = ["ModelServer"]

logger = logging.getLogger("ray.serve")

#: Input or output name -> array, first dimension the instances.
Tensors = dict[str, np.ndarray]

PLATFORM = "onnxruntime_onnx"
#: An ONNX Runtime call predicted shorter than this runs on the event loop instead of a worker
#: thread (the thread hand-off and the GIL's ping-pong cost more than such a call). The
#: prediction is a moving average of the time per instance times the batch's instances. A call
#: on the loop that took longer than SLOW_INLINE_S (a model whose cost depends on the values,
#: not only the count) sends the next 100 x 2^k calls to the thread (k: how often it happened),
#: so the loop, which answers health checks, 503s and time-outs, is rarely blocked, while one
#: call a noisy machine pre-empted does not turn the fast path off for good.
INLINE_CALL_S = 0.0005
SLOW_INLINE_S = 0.02
MODEL_VERSION = "1"


class ModelServer:
    """One replica: an ONNX Runtime session behind the V2 REST routes.

    A plain class (constructible in tests); `serving.app.ModelDeployment` is its Serve deployment.
    """

    def __init__(self, args: ServeArgs, settings: ServeSettings | None = None) -> None:
        """A replica of the application `args`; Ray Serve then calls `reconfigure` with the
        deployment's user_config (tests pass `settings` instead).

        Raises:
            TunerError: the model file is missing or its inputs cannot be served.
        """
        self._args = args
        self._settings: ServeSettings | None = None
        self._session: ort.InferenceSession | None = None
        self._metrics: ServerMetrics | None = None
        self._shadow: Shadow | None = None  # the fp32 comparison (serving.shadow); None: off
        self._per_instance_s: float | None = None  # moving average of ONNX Runtime time per instance
        self._inline_pause, self._slow_inline = 0, 0  # calls kept off the loop; slow calls on it seen
        self._batcher: Batcher[Tensors, Tensors] = Batcher(self._infer_batch, count_instances)
        if settings is not None:
            self.reconfigure(settings.model_dump())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the deployment's user_config in place (Ray Serve calls this on start and on every
        change of it): a new model file or thread count loads a new session; batch limits change
        at once. Requests in flight finish on the session they started with.

        Raises:
            TunerError: the settings are invalid, the model file is missing or its inputs cannot
                be served (the replica then fails to start or to update, and Serve reports why).
        """
        try:
            settings = ServeSettings.model_validate(user_config)
        except ValidationError as exc:
            lines = "; ".join(f"user_config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise TunerError(f"Invalid user_config of the deployment: {lines}. Regenerate the Serve config.") from None
        old = self._settings
        session = self._session
        if old is None or session is None or (settings.model_path, settings.threads_per_replica, settings.providers) != (
                old.model_path, old.threads_per_replica, old.providers):
            session = load_session(settings)
        inputs, outputs = describe_model(session, settings)
        self._inputs, self._outputs = inputs, outputs
        self._parser = RequestParser(inputs, [o.name for o in outputs], settings.batch_size)
        self._model_dtypes = {i.name: ORT_TYPES[i.type] for i in session.get_inputs()}
        self._max_body_bytes = settings.max_body_bytes or max_body_bytes_for(inputs, settings.batch_size)
        if self._metrics is None:
            self._metrics = ServerMetrics(self._args.model_name)
        self._batcher.configure(settings.batch_size, settings.batch_wait_timeout_s)
        self._shadow = shadow_for(settings, self._shadow, [i.name for i in inputs], self._record_shadow)
        self._settings, self._session = settings, session
        self._per_instance_s, self._inline_pause, self._slow_inline = None, 0, 0  # new model or batch: learn again

    def _record_shadow(self, compared: int, agreed: int) -> None:
        if self._metrics is not None:
            self._metrics.shadow(compared, agreed)

    def check_health(self) -> None:
        """Serve's replica health check: the session must be loaded."""
        if self._session is None:
            raise RuntimeError("The ONNX Runtime session is not loaded.")

    def _current(self) -> ServeSettings:
        if self._settings is None:
            raise ProtocolError("The replica has no settings yet (reconfigure has not run).")
        return self._settings

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self._args.model_name or version not in (None, MODEL_VERSION):
            asked = repr(name) if version is None else f"{name!r} version {version!r}"
            raise UnknownModel(
                f"Got unknown model {asked}. This server serves {self._args.model_name!r} "
                f"(version {MODEL_VERSION!r}). Use /v2/models/{self._args.model_name}/...")

    def server_metadata(self) -> dict[str, Any]:
        """V2 server metadata."""
        return {"name": "tuner", "version": tuner.__version__,
                "extensions": ["binary_tensor_data"]}

    def live(self) -> dict[str, bool]:
        """V2 liveness: 200 while the replica answers at all."""
        return {"live": True}

    def ready(self) -> JSONResponse:
        """V2 readiness: 200 once the ONNX Runtime session is loaded, else 503."""
        loaded = self._session is not None
        return JSONResponse(status_code=200 if loaded else 503, content={"ready": loaded})

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """V2 model metadata: tensors (-1 for the batch) plus precision and batch size."""
        self._check_model(name, version)
        return {
            "name": name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORM,
            "inputs": [meta.to_v2() for meta in self._inputs],
            "outputs": [meta.to_v2() for meta in self._outputs],
            "parameters": {"precision": self._current().precision, "batch_size": self._current().batch_size,
                           "threads_per_replica": self._current().threads_per_replica,
                           "max_body_bytes": self._max_body_bytes,
                           "providers": self._session.get_providers() if self._session else []},
        }

    def model_ready(self, name: str, version: str | None = None) -> JSONResponse:
        """V2 model readiness; 404 for a model this server does not serve."""
        self._check_model(name, version)
        return self.ready()

    async def __call__(self, request: Request) -> Response:
        """Every HTTP request: V2 routes matched by hand (a web framework's router and
        dependency injection cost more per request than this model's inference), errors as
        {"error": message} (see the module docstring)."""
        settings = self._settings
        if settings is not None and settings.auth_token_sha256 is not None and \
                tuple(request.scope["path"].strip("/").split("/")) not in OPEN_PATHS:
            reason = unauthorized_reason(request.headers.get("authorization"), settings.auth_token_sha256)
            if reason is not None:
                return error_response(401, reason, {"WWW-Authenticate": CHALLENGE})
        try:
            return await self._route(request)
        except ProtocolError as exc:
            return error_response(exc.status, str(exc))
        except NotFound as exc:
            return error_response(exc.status, str(exc))

    async def _route(self, request: Request) -> Response:
        parts = request.scope["path"].strip("/").split("/")
        method = request.method
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            name, rest = parts[2], parts[3:]
            version = None
            if rest[:1] == ["versions"] and len(rest) >= 2:
                version, rest = rest[1], rest[2:]
            if rest == ["infer"]:
                self._allow(request, "POST")
                return await self.infer(name, request, version)
            if rest == []:
                self._allow(request, "GET")
                return JSONResponse(self.model_metadata(name, version))
            if rest == ["ready"]:
                self._allow(request, "GET")
                return self.model_ready(name, version)
        elif parts == ["v2"]:
            self._allow(request, "GET")
            return JSONResponse(self.server_metadata())
        elif parts == ["v2", "health", "live"]:
            self._allow(request, "GET")
            return JSONResponse(self.live())
        elif parts == ["v2", "health", "ready"]:
            self._allow(request, "GET")
            return self.ready()
        raise NotFound(404, request) if method in ("GET", "POST", "HEAD") else NotFound(405, request)

    @staticmethod
    def _allow(request: Request, method: str) -> None:
        if request.method != method:
            raise NotFound(405, request)

    async def infer(self, name: str, request: Request, version: str | None = None) -> Response:
        """V2 inference, JSON or binary; errors as {"error"} (see the module docstring)."""
        started = time.perf_counter()
        limit_s = self._current().request_timeout_s
        try:
            async with asyncio.timeout(limit_s):
                response = await self._infer(name, version, request)
        except ProtocolError as exc:
            response = error_response(exc.status, str(exc))
        except TimeoutError:
            response = error_response(408, f"The request timed out after {limit_s}s (user_config.request_timeout_s, from "
                                   "http_options.request_timeout_s). The replica is busy or the batch is too "
                                   "large for the time allowed: retry later, send fewer instances, or raise "
                                   "request_timeout_s in the Serve config.")
        if self._metrics is not None:
            self._metrics.request(response.status_code, time.perf_counter() - started)
        return response

    async def _infer(self, name: str, version: str | None, request: Request) -> Response:
        self._check_model(name, version)
        header_length = request.headers.get(HEADER_LENGTH)
        check_content_type(request.headers.get("content-type"), header_length)
        settings = self._current()
        # The request's deadline (`infer`) already bounds the body unless the body's comes first.
        body_s = settings.body_timeout_s if settings.body_timeout_s < settings.request_timeout_s else None
        body = await read_body(request, self._max_body_bytes, body_s)
        parsed = self._parser.parse(body, header_length)
        try:
            results = await self._batcher.submit(parsed.tensors)
        except Exception as exc:  # the V2 error format, not a bare 500 page
            logger.exception("Inference failed")
            return error_response(500, f"Inference failed: {type(exc).__name__}: {exc}")
        binary = [n for n, is_binary in parsed.outputs.items() if is_binary]
        encoded = encode_infer_response(name, {n: results[n] for n in parsed.outputs},
                                        parsed.id, binary)
        return Response(encoded.body, headers=encoded.headers)

    async def _infer_batch(self, requests: list[Tensors]) -> list[Tensors]:
        """One batch of requests (`self._batcher` forms it): ONNX Runtime on them, the metrics, the shadow."""
        # A worker thread keeps the event loop (health checks, request parsing) responsive while a
        # long call runs; a call shorter than the hand-off to that thread runs on the loop itself.
        timings: list[tuple[int, float]] = []
        inline = self._inline_pause == 0 and self._per_instance_s is not None and \
            self._per_instance_s * min(sum(map(count_instances, requests)), self._current().batch_size) < INLINE_CALL_S
        self._inline_pause = max(0, self._inline_pause - 1)
        if inline:
            results = self._run_batch(requests, timings)
        else:
            results = await asyncio.to_thread(self._run_batch, requests, timings)
        for instances, seconds in timings:
            per = seconds / max(1, instances)
            self._per_instance_s = per if self._per_instance_s is None else 0.8 * self._per_instance_s + 0.2 * per
            if inline and seconds > SLOW_INLINE_S:
                self._slow_inline += 1
                self._inline_pause = min(100 * 2 ** self._slow_inline, 1_000_000)
        for instances, seconds in timings:  # recorded on the event loop's thread
            if self._metrics is not None:
                self._metrics.batch(instances, seconds)
        if self._shadow is not None:  # after the results: sampled here, compared in a worker thread
            self._shadow.offer(requests, results, self._outputs[0].name)
        return results

    def _run_batch(self, requests: list[Tensors],
                   timings: list[tuple[int, float]] | None = None) -> list[Tensors]:
        assert self._session is not None  # set in __init__; None only while loading
        return run_batch(self._session, requests, self._model_dtypes, [o.name for o in self._outputs],
                         self._current().batch_size, timings)
