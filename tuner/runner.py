"""The only module that imports Ray: the cluster, the resources of a trial, its time-out.

A CPU trial is one actor per replica (`num_cpus = threads_per_replica`), each holding its own
ONNX Runtime session; the driver drives their measurement windows in lock-step. An FPGA
trial is one Ray task running the analytical cost model. Workers get the model's bytes from
the object store, so a multi-node cluster needs no shared file system.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, OutOfMemoryError, RayActorError, RayError

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.evaluators.cpu import ReplicaBench
from tuner.evaluators.fpga import evaluate_fpga
from tuner.evaluators.protocol import run_protocol
from tuner.metrics import PerfResult
from tuner.models.spec import PreparedModel
from tuner.search_space import MeasurementSettings


class TrialFailed(Exception):
    """A trial could not be measured. `infeasible` marks causes the config itself implies
    (out of memory), which are reported to the sampler as constraint violations, not FAIL."""

    def __init__(self, reason: str, *, infeasible: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.infeasible = infeasible


class RayCluster:
    """A Ray cluster: a local one started here (default) or an existing one by address."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.started_here = address is None
        t0 = time.perf_counter()
        try:
            if address is None:
                ray.init(
                    num_cpus=num_cpus or os.cpu_count(),
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise TunerError(
                f"Could not connect to the Ray cluster at {address!r}: {exc}. Check the address "
                "(ray status on the head node prints it). Ray 2.60 clusters use token "
                "authentication, which Ray only sends to an explicit address when asked: run "
                "with RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN=<ray get-auth-token on the head> "
                "if ~/.ray/auth_token is not the cluster's). Or drop --ray-address to start a "
                "local cluster."
            ) from None
        self.start_s = time.perf_counter() - t0

    def info(self, fpga_devices: dict[str, int], gpu_evaluator: bool = False) -> ClusterInfo:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes]
        gpus = sum(float(n["Resources"].get("GPU", 0)) for n in nodes)
        return ClusterInfo(
            total_cpus=sum(cpus),
            max_node_cpus=max(cpus, default=0),
            total_gpus=gpus,
            nodes=len(nodes),
            gpu_evaluator=gpu_evaluator,
            fpga_devices=fpga_devices,
        )

    def describe(self) -> str:
        res = ray.cluster_resources()
        where = "local cluster started by tuner" if self.started_here else "existing cluster"
        return (
            f"Ray {ray.__version__}, {where}: {int(res.get('CPU', 0))} CPU, "
            f"{int(res.get('GPU', 0))} GPU, {len([n for n in ray.nodes() if n.get('Alive')])} node(s)"
        )

    def shutdown(self) -> None:
        if ray.is_initialized():
            ray.shutdown()


@dataclass
class TrialRunner:
    """Runs one configuration on the cluster and returns its PerfResult."""

    model: PreparedModel
    settings: MeasurementSettings
    fpga_catalog: dict[str, Any]
    cluster: ClusterInfo
    pin_cores: bool = False  # only on a local single-node cluster started by tuner

    def __post_init__(self) -> None:
        self._refs: dict[str, ray.ObjectRef] = {}

    def _model_ref(self, precision: str) -> ray.ObjectRef:
        if precision not in self._refs:
            with open(self.model.variants[precision].path, "rb") as f:
                self._refs[precision] = ray.put(f.read())
        return self._refs[precision]

    def run(self, config: TrialConfig) -> PerfResult:
        if config.platform == "cpu":
            return self._run_cpu(config)
        if config.platform == "fpga":
            return self._run_fpga(config)
        raise TrialFailed(f"platform {config.platform!r} has no evaluator on this cluster")

    def _run_fpga(self, config: TrialConfig) -> PerfResult:
        task = ray.remote(num_cpus=1, max_retries=0)(evaluate_fpga)
        ref = task.remote(
            self._model_ref("int8"), self.model.input_shapes(1), config, self.fpga_catalog[config.device]
        )
        try:
            return ray.get(ref, timeout=self.settings.trial_timeout_s)
        except GetTimeoutError:
            ray.cancel(ref, force=True)
            raise TrialFailed(f"FPGA estimate timed out after {self.settings.trial_timeout_s} s")
        except RayError as exc:
            raise TrialFailed(f"FPGA estimate failed: {_short(exc)}") from None

    def _run_cpu(self, config: TrialConfig) -> PerfResult:
        if config.cpus_needed > self.cluster.total_cpus:
            raise TrialFailed(
                f"needs {config.cpus_needed} CPUs, the cluster has {self.cluster.total_cpus}"
            )
        pin = self._core_sets(config)
        actor_cls = ray.remote(ReplicaBench)
        deadline = time.monotonic() + self.settings.trial_timeout_s
        actors = [
            actor_cls.options(num_cpus=config.threads_per_replica, max_restarts=0).remote(
                self._model_ref(config.precision),
                self.model.inputs,
                config.batch_size,
                config.threads_per_replica,
                pin[i] if pin else None,
            )
            for i in range(config.replicas)
        ]

        def broadcast(method: str, args: tuple) -> list:
            refs = [getattr(a, method).remote(*args) for a in actors]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GetTimeoutError("trial deadline passed")
            return ray.get(refs, timeout=remaining)

        try:
            return run_protocol(broadcast, self.settings)
        except GetTimeoutError:
            raise TrialFailed(f"timed out after {self.settings.trial_timeout_s} s") from None
        except OutOfMemoryError as exc:
            raise TrialFailed(f"out of memory: {_short(exc)}", infeasible=True) from None
        except (RayActorError, RayError) as exc:
            raise TrialFailed(f"replica failed: {_short(exc)}") from None
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)

    def _core_sets(self, config: TrialConfig) -> list[list[int]] | None:
        """Distinct cores per replica when the cluster is this one machine, else None."""
        if not self.pin_cores or self.cluster.nodes != 1 or not hasattr(os, "sched_getaffinity"):
            return None
        cores = sorted(os.sched_getaffinity(0))
        t = config.threads_per_replica
        if config.replicas * t > len(cores):
            return None
        return [cores[i * t : (i + 1) * t] for i in range(config.replicas)]


def _short(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else type(exc).__name__
    return f"{type(exc).__name__}: {msg}"[:limit]
