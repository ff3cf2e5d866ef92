"""`LocalRunner`: the `Runner` seam in this process, without Ray. Replicas are threads of this
process, the cost models are plain calls; the same evaluators and the same timing protocol as
on the cluster.

For the study loop's unit tests and for quick checks on one machine. Unlike `RayRunner` it pins
no cores and enforces no time-out: parallel trials share this process's cores (each takes its
cores from a `CoreAllocator`, so they never hold more than the machine has), and a layout needing
more cores than the machine has is not runnable.
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tuner.config import TrialConfig
from tuner.evaluators.base import EstimateEvaluator, ReplicaEvaluator, thread_broadcast
from tuner.evaluators.registry import evaluator_for
from tuner.evaluators.windows import run_protocol
from tuner.metrics import PerfResult
from tuner.models.spec import PreparedModel
from tuner.runner.base import TrialFailed
from tuner.runner.cores import CoreAllocator, NodeCores
from tuner.spec.measurement import LoadSpec, MeasurementSettings

_OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "out of memory")


def local_cores() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else tuple(range(os.cpu_count() or 1))


@dataclass
class LocalRunner:
    """Runs configurations in this process; thread-safe.

    Attributes:
        devices: catalog entries of the modelled platforms' devices, by key (FPGA boards).
        cores: the cores trials may use (default: every core this process may run on).
    """

    model: PreparedModel
    settings: MeasurementSettings
    load: LoadSpec
    devices: dict[str, Any] = field(default_factory=dict)
    cores: tuple[int, ...] = field(default_factory=local_cores)

    def __post_init__(self) -> None:
        self.allocator = CoreAllocator([NodeCores("local", socket.gethostname(), self.cores)])

    def run(self, config: TrialConfig) -> PerfResult:
        evaluator = evaluator_for(config.platform)
        if evaluator is None:
            raise TrialFailed(f"platform {config.platform!r} has no evaluator")
        if isinstance(evaluator, EstimateEvaluator):
            return self._estimate(evaluator, config)
        if not isinstance(evaluator, ReplicaEvaluator):
            raise TrialFailed("the served level needs Ray Serve on a Ray cluster; LocalRunner measures the engine level")
        return self._measure(evaluator, config)

    def _estimate(self, evaluator: EstimateEvaluator, config: TrialConfig) -> PerfResult:
        with open(self.model.variants[evaluator.variant].path, "rb") as f:
            data = f.read()
        t0 = time.perf_counter()
        result = evaluator.estimate(data, self.model.input_shapes(1), config, self.devices[config.device or ""])
        result.details["trial_wall_s"] = round(time.perf_counter() - t0, 3)
        return result

    def _measure(self, evaluator: ReplicaEvaluator, config: TrialConfig) -> PerfResult:
        threads = evaluator.cores_per_replica(config)
        if not self.allocator.can_ever_fit(config.replicas, threads):
            raise TrialFailed(f"{config.replicas} replica(s) x {threads} thread(s) need more than the "
                              f"{len(self.cores)} cores of this machine", infeasible=True)
        placement = self.allocator.reserve(config.replicas, threads)
        assert placement is not None
        t0 = time.perf_counter()
        try:
            benches = [evaluator.make_bench(config, None) for _ in range(config.replicas)]
            variant = self.model.variants[config.precision]
            with open(variant.path, "rb") as f:
                data = f.read()
            with ThreadPoolExecutor(max_workers=config.replicas) as pool:
                broadcast = thread_broadcast(benches, pool)
                broadcast("prepare", (variant.sha256, data, self.model.inputs, config.batch_size))
                result = run_protocol(broadcast, self.settings, self.load)
        except MemoryError as exc:
            raise TrialFailed(f"out of memory: {exc}", infeasible=True) from None
        except Exception as exc:  # noqa: BLE001 - a runtime error fails this trial, not the study
            text = f"{type(exc).__name__}: {exc}"
            if any(m in text.lower() for m in _OOM_MARKERS):
                raise TrialFailed(f"out of memory: {text[:400]}", infeasible=True) from None
            raise TrialFailed(f"replica failed: {text[:400]}") from None
        finally:
            self.allocator.release(placement)
        result.details.update(trial_wall_s=round(time.perf_counter() - t0, 3), runner="local")
        return result

    def shutdown(self) -> None:
        """Nothing is held between trials."""

    def abort(self) -> None:
        """Running trials finish their current window; nothing can be killed in-process."""
