"""Run one configuration on the Ray cluster: exclusive cores, pinned replicas, time-out, failures.

The evaluator comes from `tuner.evaluators.registry` by the config's platform. A measured
platform (`ReplicaEvaluator`) reserves distinct cores for each replica (waiting while other
trials hold them), takes one pinned actor per replica from the pool, and drives the measurement
protocol. A modelled platform (`EstimateEvaluator`) reserves one core and runs its cost model as
a Ray task. At the served level a measured platform is deployed on Ray Serve and driven over HTTP
(`tuner.runner.served`), after its engine-level measurement (the ceiling) unless told not to.
Workers get the model's bytes from the object store, so a multi-node cluster needs no shared
files (a served trial's replicas read the variant from the driver's disk: one node).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, OutOfMemoryError, RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.config import TrialConfig
from tuner.evaluators.base import EstimateEvaluator, ReplicaEvaluator
from tuner.evaluators.gpu import GpuSetup
from tuner.evaluators.interference import memory_held
from tuner.evaluators.registry import evaluator_for
from tuner.evaluators.served import ServedEvaluator
from tuner.evaluators.windows import run_protocol
from tuner.metrics import PerfResult
from tuner.models.spec import PreparedModel
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.cores import Placement
from tuner.runner.memory_fit import predict, trial_budget_bytes, why_not_fits
from tuner.runner.served import ServedTrials
from tuner.runner.served_client import check_client_node
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings

_OOM_MARKERS = ("Failed to allocate memory", "bad_alloc", "std::bad_alloc", "out of memory", "MemoryError")


@dataclass
class RayRunner:
    """Runs configurations on `cluster`; thread-safe, so several trials can be in flight.

    Attributes:
        devices: catalog entries of the modelled platforms' devices, by key (FPGA boards).
        exclusive_hosts: a measured trial takes its whole machine (--exclusive-hosts).
    """

    model: PreparedModel
    settings: MeasurementSettings
    load: LoadSpec
    devices: dict[str, Any]
    cluster: RayCluster
    exclusive_hosts: bool = False
    level: str = "engine"  # "served": through the Ray Serve application (tuner.runner.served)
    served: ServedSettings = field(default_factory=ServedSettings)
    gpu: GpuSetup | None = None  # what gpu trials run on here (probed); None: gpu cannot run
    trial_memory_gib_max: float | None = None  # the space's budget; None: a quarter of the cluster's memory
    _refs: dict[str, ray.ObjectRef] = field(default_factory=dict, init=False, repr=False)
    _served: Any = field(default=None, init=False, repr=False)
    _node_memory: list[int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.level == "served":
            check_client_node(self.served.client_node, self.cluster.nodes)

    @property
    def pool(self):  # shared by every runner of the cluster
        return self.cluster.pool

    def _model_ref(self, precision: str) -> ray.ObjectRef:
        if precision not in self._refs:
            with open(self.model.variants[precision].path, "rb") as f:
                self._refs[precision] = ray.put(f.read())
        return self._refs[precision]

    def run(self, config: TrialConfig) -> PerfResult:
        evaluator = evaluator_for(config.platform, self.level, self.gpu)
        if evaluator is None:
            raise TrialFailed(f"platform {config.platform!r} has no evaluator on this cluster")
        engine_level = evaluator_for(config.platform, "engine", self.gpu)
        refusal = engine_level.refuses(config) if isinstance(engine_level, ReplicaEvaluator) else None
        if not refusal and config.platform == "cpu":
            refusal = self._memory_refusal(config)
        if refusal:
            raise TrialFailed(refusal, infeasible=True)
        if isinstance(evaluator, EstimateEvaluator):
            return self._run_estimate(evaluator, config)
        if isinstance(evaluator, ServedEvaluator):
            if self._served is None:
                self._served = ServedTrials(self)
            engine = self.engine(config) if self.served.engine_ceiling else None
            return self._served.run(evaluator, config, engine)
        return self._run_replicas(evaluator, config)

    def _memory_refusal(self, config: TrialConfig) -> str | None:
        variant = self.model.variants[config.precision]
        prediction = predict(config, self.model.activation_bytes_per_instance, os.path.getsize(variant.path))
        if self._node_memory is None:
            self._node_memory = self.cluster.node_memory_bytes()
        return why_not_fits(prediction, self._node_memory,
                            trial_budget_bytes(self.trial_memory_gib_max, self._node_memory))

    def engine(self, config: TrialConfig) -> PerfResult:
        """The engine-level measurement of `config` (whatever this runner's level)."""
        evaluator = evaluator_for(config.platform, "engine", self.gpu)
        assert isinstance(evaluator, ReplicaEvaluator)
        return self._run_replicas(evaluator, config)

    def _reserve(self, replicas: int, threads: int, exclusive: bool = False,
                 only: frozenset[str] | None = None) -> list[Placement]:
        alloc = self.cluster.allocator
        if not alloc.can_ever_fit(replicas, threads, only):
            where = "" if only is None else f" on the {len(only)} node(s) with GPUs"
            raise TrialFailed(
                f"{replicas} replica(s) x {threads} thread(s) can never be placed{where}: usable cores per "
                f"node are {alloc.usable_cpus()} (a replica's threads must share one node)",
                infeasible=True,
            )
        placement = alloc.reserve(replicas, threads, exclusive=exclusive, only=only)
        assert placement is not None  # no time-out: it waits until the layout fits
        return placement

    def _run_estimate(self, evaluator: EstimateEvaluator, config: TrialConfig) -> PerfResult:
        placement = self._reserve(1, 1)
        try:
            self.pool.make_room(placement[0])
            task = ray.remote(num_cpus=1, max_retries=0)(evaluator.estimate).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(placement[0].node_id, soft=False))
            t0 = time.perf_counter()
            ref = task.remote(self._model_ref(evaluator.variant), self.model.input_shapes(1), config,
                              self.devices[config.device or ""])
            try:
                result = ray.get(ref, timeout=self.settings.trial_timeout_s)
            except GetTimeoutError:
                ray.cancel(ref, force=True)
                raise TrialFailed(f"{config.platform.upper()} estimate timed out after "
                                  f"{self.settings.trial_timeout_s} s") from None
            except RayError as exc:
                raise TrialFailed(f"{config.platform.upper()} estimate failed: {_short(exc)}") from None
            result.details["trial_wall_s"] = round(time.perf_counter() - t0, 3)
            return result
        finally:
            self.cluster.allocator.release(placement)

    def _run_replicas(self, evaluator: ReplicaEvaluator, config: TrialConfig) -> PerfResult:
        t_wait = time.perf_counter()
        exclusive = self.exclusive_hosts
        gpu_nodes = self.cluster.gpu_nodes if evaluator.actor_resources(config).get("num_gpus") else None
        placement = self._reserve(config.replicas, evaluator.cores_per_replica(config), exclusive, gpu_nodes)
        if gpu_nodes is not None:
            self.cluster.release_serve_gpus()  # a served trial's replicas may hold them
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.settings.trial_timeout_s
        actors, reused = self.pool.acquire(evaluator, config, placement)
        healthy = False

        def broadcast(method: str, args: tuple | list) -> list:
            per = args if isinstance(args, list) else [args] * len(actors)
            refs = [a.call.remote(method, *x) for a, x in zip(actors, per)]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GetTimeoutError("trial deadline passed")
            return ray.get(refs, timeout=remaining)

        try:
            variant = self.model.variants[config.precision]
            cached = broadcast("prepare", (variant.sha256, self._model_ref(config.precision),
                                           self.model.inputs, config.batch_size))
            result = run_protocol(broadcast, self.settings, self.load)
            healthy = True
        except GetTimeoutError:
            raise TrialFailed(f"timed out after {self.settings.trial_timeout_s} s; its Ray actors were killed") from None
        except OutOfMemoryError as exc:
            raise out_of_memory(_short(exc)) from None
        except RayActorError as exc:
            self.cluster.refresh()  # its node may be gone
            raise TrialFailed(f"a replica's worker died: {_short(exc)}") from None
        except RayError as exc:
            text = str(exc)
            if any(m in text for m in _OOM_MARKERS):
                raise out_of_memory(_short(exc)) from None
            raise TrialFailed(f"replica failed: {_short(exc)}") from None
        finally:
            self.pool.release(evaluator, config, placement, actors, healthy)
            self.cluster.allocator.release(placement, exclusive)
        result.details.update(
            trial_wall_s=round(time.perf_counter() - t0, 3),
            queued_s=round(t0 - t_wait, 3),
            actors_reused=reused,
            sessions_cached=sum(bool(c) for c in cached),
            placement=[{"node_id": p.node_id, "cores": list(p.cores)} for p in placement],
        )
        extra = evaluator.record(config, result.details.get("replicas") or [])
        if extra is not None:
            result.details[config.platform] = extra
        return result

    def shutdown(self) -> None:
        """Release this runner's idle actors (the cluster's pool is shared) and its load client."""
        if self._served is not None:
            self._served.close()
        self.pool.shutdown()

    def abort(self) -> None:
        """Interrupted: kill every replica actor, those measuring too, so running trials end now."""
        self.pool.abort()


def out_of_memory(message: str) -> TrialFailed:
    """An out-of-memory failure: the configuration's own (infeasible: the sampler learns not to try
    it again), unless other processes' memory is what it ran out of (`MemoryHeld.others_to_blame`,
    with the failed allocation's size when the message names it); then the machine is to blame,
    the failure says so and the configuration is not marked infeasible."""
    held = memory_held()
    found = _REQUESTED.search(message)
    request_gib = int(found.group(1)) / 2**30 if found else None
    if held is not None and held.others_to_blame(request_gib):
        return TrialFailed(f"out of memory because of other work: {held.describe()}; free memory on this machine "
                           f"and run the study again (this configuration is not marked infeasible for it). Ray said: "
                           f"{message}")
    asked = f"one allocation of {request_gib:,.1f} GiB; " if request_gib is not None else ""
    return TrialFailed(f"out of memory: {message}" + (f" ({asked}{held.describe()})" if held else ""), infeasible=True)


#: How ONNX Runtime names the allocation that failed ("... requested buffer of size 68719476736").
_REQUESTED = re.compile(r"requested buffer of size (\d+)")


def _short(exc: BaseException, limit: int = 400) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {msg}"[:limit]
