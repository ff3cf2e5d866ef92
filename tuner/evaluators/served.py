"""The served measurement level: a configuration measured through the serving stack users get.

The runner deploys the configuration as the very Ray Serve application `tuner promote` writes
(`serving.serve_config.make_serve_config`, applied in place where Serve can), then drives its HTTP
endpoint with a V2 client (`serving.client.WindowClient`): binary tensors by default, each request
carrying `instances_per_request` instances (1 by default: what clients send). The client is a
`Bench` like the replicas of the engine level, so `windows.run_protocol` times it the same way
(warm-up, windows until stable, confidence intervals):

- offline: a closed loop of `concurrency` requests always in flight (default: every request the
  replicas take at once, `replicas x max_ongoing_requests`, at most 256);
- server: Poisson arrivals at the load's `target_rps`, latency from each scheduled arrival.

Figures are end to end: the client, HAProxy (or Serve's proxy), the replica's HTTP handling,
the replica's batcher, ONNX Runtime, and the way back. No Ray import here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.config import TrialConfig
from tuner.evaluators.windows import WindowSample
from tuner.models.spec import InputSpec

if TYPE_CHECKING:
    from serving.auth import BearerToken

MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class Endpoint:
    """Where a served trial's application answers."""

    url_base: str
    model_name: str


@dataclass(frozen=True)
class ServedEvaluator:
    """The served level of a platform that Ray Serve can run (cpu)."""

    platform: str = "cpu"
    level: str = "served"
    estimated: bool = False

    def concurrency(self, config: TrialConfig, max_ongoing_requests: int, wanted: int | None) -> int:
        """Requests in flight in offline mode: what the replicas take at once, unless given."""
        return wanted or min(MAX_CONCURRENCY, config.replicas * max_ongoing_requests)


class ServedBench:
    """The load client of a served trial, with the `Bench` contract of the engine's replicas.

    `prepare(key, endpoint, inputs, instances_per_request)` points it at an endpoint (a new
    `key` opens a new client); `run_for` and `serve_for` time one window each. Failed requests
    are not in the latencies; `failures()` tells how many there were and why. `auth_token`: the
    endpoint's bearer token (`serving.auth`), sent with every request. It runs in tuner's process
    or, as a Ray actor, on another node (`tuner.runner.served_client`): the runner changes it
    through methods only. `cpu_ids`: the cores to pin this process to (an actor's reserved core).
    """

    def __init__(self, concurrency: int, binary: bool = True, timeout_s: float = 30.0,
                 auth_token: BearerToken | None = None, cpu_ids: tuple[int, ...] | None = None) -> None:
        if cpu_ids and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpu_ids)
        self.concurrency, self.binary, self.timeout_s = concurrency, binary, timeout_s
        self.auth_token = auth_token
        self._client: Any = None
        self._key: str | None = None
        self._instances = 1
        self._failed: dict[str, int] = {}
        self._errors: list[str] = []
        self._sent = 0
        self.stack_pids: tuple[int, ...] = ()  # the served stack's processes (replicas, proxy): tuner's own

    def prepare(self, key: str, model: Any, inputs: tuple[InputSpec, ...], batch_size: int) -> bool:
        from serving.client import WindowClient

        cached = key == self._key and self._client is not None
        if not cached:
            self.close()
            assert isinstance(model, Endpoint), "a served bench prepares an Endpoint"
            self._client = WindowClient(model.url_base, model.model_name, inputs, instances=batch_size,
                                        concurrency=self.concurrency, binary=self.binary, timeout_s=self.timeout_s,
                                        auth_token=self.auth_token)
            self._key = key
        self._instances = batch_size
        return cached

    def set_concurrency(self, concurrency: int) -> None:
        self.concurrency = concurrency

    def set_stack_pids(self, pids: tuple[int, ...]) -> None:
        self.stack_pids = pids

    def cpu_seconds(self) -> float:
        """CPU time this process (the client) has used, user and system."""
        t = os.times()
        return t.user + t.system

    def info(self) -> dict[str, Any]:
        return {"node": socket.gethostname(), "pid": os.getpid(), "role": "load client",
                "client": "tuner V2 client (libcurl multi via pycurl, connections kept across windows)",
                "cpu_ids": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "concurrency": self.concurrency, "instances_per_request": self._instances,
                "binary": self.binary, "stack_pids": list(self.stack_pids)}

    def _sample(self, window: Any) -> WindowSample:
        self._sent += len(window.latencies_s) + window.requests_failed
        for kind, n in window.failed_by_kind.items():
            self._failed[kind] = self._failed.get(kind, 0) + n
        self._errors.extend(e for e in window.errors_sample if e not in self._errors)
        return WindowSample(window.latencies_s, window.elapsed_s, window.instances)

    def run_for(self, seconds: float, min_calls: int) -> WindowSample:
        return self._sample(self._client.closed_loop(seconds, min_calls, self.concurrency))

    def serve_for(self, seconds: float, rate_rps: float, max_wait_s: float, seed: int) -> WindowSample:
        return self._sample(self._client.poisson(seconds, rate_rps, seed))  # the server batches, not the client

    def failures(self) -> tuple[int, int, dict[str, int], list[str]]:
        """(requests sent, failed, failed by kind, first error messages) since the last reset."""
        return self._sent, sum(self._failed.values()), dict(self._failed), self._errors[:5]

    def reset_failures(self) -> None:
        self._failed, self._errors, self._sent = {}, [], 0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client, self._key = None, None
