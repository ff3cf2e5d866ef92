"""CPU evaluator: one ONNX Runtime session per replica, real load, real clocks.

A `ReplicaBench` is one replica process: pinned to its cores for its whole life, it keeps
the sessions it has built (so a later trial of the same variant does not rebuild them) and
generates load itself, so no client process competes for its cores. Two load modes:

- offline: calls of `batch_size` instances back to back (closed loop, MLPerf Offline);
- server: single-instance requests arriving as a Poisson process at a given rate, batched
  like the server batches them (up to `batch_size`, waiting at most `max_wait_s` for a batch
  to fill); a request's latency runs from its arrival to its batch's completion, so it
  includes queueing and the batching wait (MLPerf Server).

The Ray runner wraps it in an actor per replica; `measure_local` runs replicas as threads
of this process (no Ray). Either way `protocol.run_protocol` drives the windows.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.evaluators.base import ReplicaEvaluator, thread_broadcast, timing_inputs
from tuner.evaluators.windows import WindowSample, run_protocol, serve_poisson
from tuner.metrics import PerfResult
from tuner.models.sessions import SESSION_CONFIG, session_options
from tuner.models.spec import InputSpec
from tuner.spec.measurement import LoadSpec, MeasurementSettings

_SESSIONS_KEPT = 2


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class ReplicaBench:
    """One replica: pinned cores, cached ONNX Runtime sessions, a built-in load generator.

    Args:
        threads: intra-op threads of every session of this replica.
        cpu_ids: cores to pin this process to, or None to leave placement to the OS.
        providers: ONNX Runtime execution providers, in order of preference.
    """

    def __init__(self, threads: int, cpu_ids: list[int] | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        if cpu_ids:
            os.sched_setaffinity(0, cpu_ids)
        self._cpu_ids = list(cpu_ids) if cpu_ids else None
        self._threads = threads
        self._providers = list(providers)
        self._sessions: OrderedDict[str, ort.InferenceSession] = OrderedDict()
        self._session: ort.InferenceSession | None = None
        self._feeds: dict[str, np.ndarray] = {}
        self._batch = 0

    def prepare(self, key: str, model: bytes | str, inputs: tuple[InputSpec, ...], batch_size: int) -> bool:
        """Make `key`'s model current at `batch_size`; returns True if the session was cached."""
        cached = key in self._sessions
        if cached:
            self._sessions.move_to_end(key)
        else:
            self._sessions[key] = ort.InferenceSession(model, session_options(self._threads), providers=self._providers)
            while len(self._sessions) > _SESSIONS_KEPT:
                self._sessions.popitem(last=False)
        self._session = self._sessions[key]
        self._feeds = timing_inputs(inputs, batch_size)
        self._batch = batch_size
        return cached

    def trim(self) -> None:
        """Drop sessions and inputs while idle in the pool: an ONNX Runtime arena keeps the peak
        of its largest batch (gigabytes for ResNet-18 at batch 256) until its session goes."""
        import gc

        self._sessions.clear()
        self._session, self._feeds = None, {}
        gc.collect()

    def info(self) -> dict[str, Any]:
        return {
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "cpu_model": cpu_model_name(),
            "cpu_ids": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "pinned": bool(self._cpu_ids),
            "threads": self._threads,
            "onnxruntime": ort.__version__,
            "providers": self._session.get_providers() if self._session else self._providers,
            "session_config": {"intra_op_num_threads": self._threads, "inter_op_num_threads": 1, **SESSION_CONFIG},
        }

    def _current(self) -> ort.InferenceSession:
        if self._session is None:
            raise TunerError("Got a timing call before prepare(). Call prepare(key, model, inputs, batch_size) first.")
        return self._session

    def run_for(self, seconds: float, min_calls: int) -> WindowSample:
        """Offline: call the model back to back for at least `seconds` and `min_calls` calls."""
        lat: list[float] = []
        run, feeds = self._current().run, self._feeds
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end or len(lat) < min_calls:
            t0 = time.perf_counter()
            run(None, feeds)
            now = time.perf_counter()
            lat.append(now - t0)
        return WindowSample(np.asarray(lat), now - start, self._batch)

    def serve_for(self, seconds: float, rate_rps: float, max_wait_s: float, seed: int) -> WindowSample:
        """Server: Poisson arrivals at `rate_rps` for `seconds`, batched up to batch_size.

        Stops early when requests wait more than 10 s (the replica is overloaded); the window
        then reports what completed, and its throughput shows the shortfall.
        """
        run, feeds = self._current().run, self._feeds
        return serve_poisson(lambda take: run(None, {k: v[:take] for k, v in feeds.items()}), self._batch,
                             seconds, rate_rps, max_wait_s, seed)


def make_cpu_bench(config: TrialConfig, cores: Sequence[int] | None) -> ReplicaBench:
    """The bench of one CPU replica: `threads_per_replica` threads, pinned to `cores`."""
    return ReplicaBench(config.threads_per_replica, list(cores) if cores else None)


def cpu_cores(config: TrialConfig) -> int:
    return config.threads_per_replica


CPU = ReplicaEvaluator("cpu", make_bench=make_cpu_bench, cores_per_replica=cpu_cores)


def measure_local(model: bytes | str, inputs: tuple[InputSpec, ...], batch_size: int, replicas: int,
                  threads: int, settings: MeasurementSettings, load: LoadSpec | None = None,
                  providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> PerfResult:
    """Measure `replicas` replicas as threads of this process (no Ray needed)."""
    benches = [ReplicaBench(threads, None, providers) for _ in range(replicas)]
    for b in benches:
        b.prepare("model", model, inputs, batch_size)
    with ThreadPoolExecutor(max_workers=replicas) as pool:
        return run_protocol(thread_broadcast(benches, pool), settings, load or LoadSpec())
