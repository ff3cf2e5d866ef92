"""Load generator and verification client for a V2 inference endpoint.

Two modes, as MLPerf names them:

- ``offline``: a closed loop. `concurrency` requests are always in flight, each carrying
  `batch_size` instances; a finished request is followed at once by the next. It measures
  the throughput the server sustains. Latency is measured from sending to the full response.
- ``server``: an open loop. Requests of one instance arrive at Poisson times at `target_rps`,
  whatever the server does. Latency is measured from the *scheduled* arrival, so a client or
  server falling behind shows up as queueing rather than being hidden (no coordinated omission).

Every 200 response is decoded and checked (one output row per instance sent); anything else
counts as a failed request, by HTTP status and by kind. Requests go as binary tensors by
default (JSON text is slow for large inputs: a ResNet input is 150k floats) and ask for binary
outputs.

No Ray import: libcurl (`serving.transfers`), so the client can run anywhere. `drive` runs for a
fixed time; `drive_background` and `run_until` run until told to stop, e.g. across a blue/green
switch that must fail no request. With `auth_token`, every request
carries ``Authorization: Bearer <token>`` (an endpoint promoted with ``--auth-token-file``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.auth import BearerToken
from serving.pacing import arrivals
from serving.request import InputLike, Mode, Outcome, RequestSpec, request_spec
from serving.transfers import Transfers
from tuner.errors import field_error

_SAMPLE = 5  # error messages kept


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured.

    Attributes:
        mode: "offline" or "server".
        requests_ok: requests answered 200 with a valid response.
        requests_failed: all other requests (sum of `failed_by_kind`).
        failed_by_status: HTTP status -> count, for requests answered with a status other than 200.
        failed_by_kind: "http_status", "connection", "timeout", "bad_response" or "other" -> count.
        instances_ok: instances in the successful requests.
        duration_s: from the first request to the last response.
        throughput_rps: instances_ok / duration_s (instances per second).
        latency_p50_ms, latency_p95_ms, latency_p99_ms: of successful requests; NaN if none.
        errors_sample: the first few distinct error messages.
        failed_at_s: when each failed request ended, seconds from the start (a timeline of a
            switch under load).
    """

    mode: str
    requests_ok: int
    requests_failed: int
    failed_by_status: dict[int, int] = field(default_factory=dict)
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    instances_ok: int = 0
    duration_s: float = 0.0
    throughput_rps: float = 0.0
    latency_p50_ms: float = math.nan
    latency_p95_ms: float = math.nan
    latency_p99_ms: float = math.nan
    errors_sample: tuple[str, ...] = ()
    failed_at_s: tuple[float, ...] = ()

    def summary(self) -> str:
        """One line for a log or a report."""
        failed = (f", {self.requests_failed} failed {self.failed_by_kind}"
                  if self.requests_failed else "")
        return (f"{self.mode}: {self.requests_ok} ok{failed}, {self.throughput_rps:.1f} "
                f"instances/s, p50/p95/p99 {self.latency_p50_ms:.1f}/{self.latency_p95_ms:.1f}/"
                f"{self.latency_p99_ms:.1f} ms over {self.duration_s:.1f} s")


def _drive(spec: RequestSpec, stop: threading.Event | None, duration_s: float | None) -> LoadResult:
    with Transfers(spec) as transfers:
        start = time.monotonic()
        deadline = start + duration_s if duration_s is not None else math.inf

        def running() -> bool:
            return time.monotonic() < deadline and not (stop is not None and stop.is_set())

        if spec.mode == "offline":
            outcomes = transfers.closed(spec.concurrency, lambda _done: running())
        else:
            outcomes = transfers.paced(arrivals(spec.target_rps, spec.seed, start, deadline), running)
        elapsed = max((o.end for o in outcomes), default=time.monotonic()) - start
    return _summarise(spec, outcomes, elapsed, start)


def _summarise(spec: RequestSpec, outcomes: list[Outcome], elapsed_s: float, start: float) -> LoadResult:
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    latencies = np.array([o.latency_s * 1000.0 for o in ok])
    p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]).tolist() if len(ok)
                     else [math.nan] * 3)
    sample: list[str] = []
    for o in failed:
        if o.message not in sample and len(sample) < _SAMPLE:
            sample.append(o.message)
    duration = max(elapsed_s, 1e-9)
    return LoadResult(
        mode=spec.mode, requests_ok=len(ok), requests_failed=len(failed),
        failed_by_status=dict(Counter(o.status for o in failed if o.status is not None)),
        failed_by_kind=dict(Counter(o.kind or "other" for o in failed)),
        instances_ok=len(ok) * spec.instances, duration_s=elapsed_s,
        throughput_rps=len(ok) * spec.instances / duration,
        latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p99, errors_sample=tuple(sample),
        failed_at_s=tuple(sorted(round(o.end - start, 3) for o in failed)),
    )


def drive(url_base: str, model_name: str, inputs: Sequence[InputLike], mode: Mode,
          batch_size: int, duration_s: float, concurrency: int | None = None,
          target_rps: float | None = None, binary: bool = True, seed: int = 0,
          timeout_s: float = 30.0, max_connections: int = 256,
          auth_token: BearerToken | None = None) -> LoadResult:
    """Load a V2 endpoint for `duration_s` seconds and measure it.

    Args:
        url_base: e.g. "http://127.0.0.1:8000".
        model_name: the model in /v2/models/NAME/infer.
        inputs: the model's inputs (name, per-instance shape, numpy dtype).
        mode: "offline" (closed loop of `concurrency` requests of `batch_size` instances) or
            "server" (Poisson arrivals at `target_rps`, one instance per request).
        batch_size: instances per request in offline mode.
        duration_s: how long to send; requests in flight at the end are waited for.
        concurrency: requests in flight in offline mode.
        target_rps: arrival rate in server mode, requests per second.
        binary: send binary tensors and ask for binary outputs (else JSON both ways).
        seed: seeds the payloads and the arrival times.
        timeout_s: a request without a full response after this long fails as "timeout".
        max_connections: open connections at most; later requests wait (and that counts).
        auth_token: the endpoint's bearer token (`serving.auth`), sent with every request.

    Raises:
        TunerError: an argument breaks a rule (named, with the value and the fix).
    """
    if not duration_s > 0:
        raise field_error("duration_s", duration_s, "It must be > 0.", "Pass seconds, e.g. 10.")
    spec = request_spec(url_base, model_name, inputs, mode, batch_size, concurrency, target_rps,
                 binary, seed, timeout_s, max_connections, auth_token=auth_token)
    return _drive(spec, None, duration_s)


def run_until(stop: threading.Event, url_base: str, model_name: str,
              inputs: Sequence[InputLike], mode: Mode, batch_size: int,
              **options: Any) -> LoadResult:
    """Like `drive`, but until `stop` is set (in another thread); blocks until then.

    `options` are `drive`'s keyword arguments other than `duration_s`.
    """
    spec = request_spec(url_base, model_name, inputs, mode, batch_size,
                 options.pop("concurrency", None), options.pop("target_rps", None),
                 options.pop("binary", True), options.pop("seed", 0),
                 options.pop("timeout_s", 30.0), options.pop("max_connections", 256),
                 auth_token=options.pop("auth_token", None))
    if options:
        raise field_error("run_until's options", sorted(options), "Unknown keyword arguments.",
                          "Use drive's keyword arguments (duration_s is replaced by `stop`).")
    return _drive(spec, stop, None)


class BackgroundLoad:
    """A load client running in a thread until `stop()`; see `drive_background`."""

    def __init__(self, spec: RequestSpec) -> None:
        self._stop = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(spec,), name="tuner-loadgen",
                                        daemon=True)
        self._thread.start()

    def _run(self, spec: RequestSpec) -> None:
        try:
            self._result = _drive(spec, self._stop, None)
        except BaseException as exc:  # handed to the caller of stop()
            self._error = exc

    @property
    def running(self) -> bool:
        """Whether the client is still sending."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 60.0) -> LoadResult:
        """Stop sending, wait for requests in flight, and return the measurement.

        Raises:
            TimeoutError: the client did not finish within `timeout_s`.
        """
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"The load client did not stop within {timeout_s} s.")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> BackgroundLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive() or self._result is None:
            self.stop()


def drive_background(url_base: str, model_name: str, inputs: Sequence[InputLike], mode: Mode,
                     batch_size: int, concurrency: int | None = None,
                     target_rps: float | None = None, binary: bool = True, seed: int = 0,
                     timeout_s: float = 30.0, max_connections: int = 256,
                     auth_token: BearerToken | None = None) -> BackgroundLoad:
    """Start a load client in a background thread; `stop()` on the result returns the LoadResult.

    Arguments as in `drive`, without `duration_s`. Usage::

        load = drive_background(url, "digits", inputs, "server", 1, target_rps=50)
        switch_deployment()
        result = load.stop()
        assert result.requests_failed == 0, result.errors_sample

    Raises:
        TunerError: an argument breaks a rule (named, with the value and the fix).
    """
    return BackgroundLoad(request_spec(url_base, model_name, inputs, mode, batch_size, concurrency,
                                target_rps, binary, seed, timeout_s, max_connections, auth_token=auth_token))
