"""CPU evaluator: one ONNX Runtime session per replica, closed-loop load, real clocks.

A `ReplicaBench` is one replica. It owns its session (with `threads` intra-op threads,
optionally pinned to given cores) and runs calls of `batch_size` instances back to back.
The Ray runner wraps it in an actor per replica; `measure_local` runs replicas in threads
of this process (for use without Ray). Either way `protocol.run_protocol` drives the windows.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

from tuner.evaluators.protocol import WindowSample, run_protocol
from tuner.metrics import PerfResult
from tuner.models.data import synthetic_inputs
from tuner.models.spec import InputSpec
from tuner.search_space import MeasurementSettings


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def session_options(threads: int) -> ort.SessionOptions:
    """The ONNX Runtime options of a CPU replica, the same when measured and when served.

    Spin-waiting is off: a spinning idle thread burns a core another replica needs (two
    2-thread sessions on 2 cores lose up to 50% with it on).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # Ray sets OMP_NUM_THREADS=1, which ORT ignores
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    for key, value in SESSION_CONFIG.items():
        opts.add_session_config_entry(key, value)
    return opts


class ReplicaBench:
    """One replica: an ONNX Runtime session and a closed-loop load generator.

    Args:
        model: the ONNX model's bytes (or a path).
        inputs: the model's inputs (per-instance shapes).
        batch_size: instances per call.
        threads: intra-op threads of the session.
        cpu_ids: cores to pin this process to, or None to leave placement to the OS.
        providers: ONNX Runtime execution providers, in order of preference.
    """

    def __init__(
        self,
        model: bytes | str,
        inputs: tuple[InputSpec, ...],
        batch_size: int,
        threads: int,
        cpu_ids: list[int] | None = None,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        if cpu_ids:
            os.sched_setaffinity(0, cpu_ids)
        self._cpu_ids = cpu_ids
        self._threads = threads
        self._batch = batch_size
        self._session = ort.InferenceSession(model, session_options(threads), providers=list(providers))
        self._feeds = synthetic_inputs(inputs, batch_size, seed=batch_size)

    def info(self) -> dict[str, Any]:
        return {
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "cpu_model": cpu_model_name(),
            "cpu_ids": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "pinned": bool(self._cpu_ids),
            "threads": self._threads,
            "onnxruntime": ort.__version__,
            "session_config": {"intra_op_num_threads": self._threads, "inter_op_num_threads": 1, **SESSION_CONFIG},
            "providers": self._session.get_providers(),
        }

    def run_for(self, seconds: float, min_calls: int) -> WindowSample:
        """Call the model back to back for at least `seconds` and `min_calls` calls."""
        lat: list[float] = []
        run, feeds = self._session.run, self._feeds
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end or len(lat) < min_calls:
            t0 = time.perf_counter()
            run(None, feeds)
            now = time.perf_counter()
            lat.append(now - t0)
        return WindowSample(latencies_s=np.asarray(lat), elapsed_s=now - start, batch_size=self._batch)


Broadcast = Callable[[str, tuple], list]


def measure_local(
    model: bytes | str,
    inputs: tuple[InputSpec, ...],
    batch_size: int,
    replicas: int,
    threads: int,
    settings: MeasurementSettings,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> PerfResult:
    """Measure `replicas` replicas as threads of this process (no Ray needed)."""
    benches = [ReplicaBench(model, inputs, batch_size, threads, None, providers) for _ in range(replicas)]
    with ThreadPoolExecutor(max_workers=replicas) as pool:

        def broadcast(method: str, args: tuple) -> list:
            return list(pool.map(lambda b: getattr(b, method)(*args), benches))

        return run_protocol(broadcast, settings)
