"""The Ray cluster: a local one started by tuner (default) or an existing one by address."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.cluster_info import ClusterInfo
from tuner.errors import TunerError
from tuner.evaluators.cpu import cpu_model_name
from tuner.evaluators.gpu import GpuSetup, detect_gpu_setup
from tuner.evaluators.gpu_select import detect_runtime
from tuner.runner.cores import CoreAllocator, NodeCores, split_host_cores
from tuner.runner.pool import ActorPool

#: A stopping replica of a served trial answers for this long before it goes (serving clusters:
#: 2 s, `serving.deploy.SERVE_FAST_PATH`, for HAProxy to drop it under live traffic). Between
#: trials no request is in flight, and a trial with fewer replicas than the last waits for the
#: surplus one to stop: measured here (digits-cnn, 2 -> 1 replica), 2.6 s to apply at 2 s, 1.0-1.15
#: s at 0.5 s, no request failed in the next trial at either.
DRAINING_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
TRIAL_DRAINING_PERIOD_S = "0.5"

#: The GPU share the probe task asks for (Ray's resource grain), so it lands on a GPU node.
GPU_PROBE_SHARE = 1e-4


def _probe() -> tuple[str, list[int], str]:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return socket.gethostname(), cores, cpu_model_name()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at `address`."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if address in ("auto", "local") or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise TunerError(
            f"Got {address!r} for --ray-address, but nothing answers there ({exc}). Start the cluster "
            "(ray start --head on that machine prints its address), fix the address, or drop "
            "--ray-address to let tuner start a local cluster.") from None


class RayCluster:
    """Connects to (or starts) Ray, and learns which cores each node may use."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
        self.started_here = address is None
        self._serve: Any = None
        self._haproxy_dir: str | None = None
        self._saved_env: dict[str, str | None] = {}
        t0 = time.perf_counter()
        if address is None:
            # Served trials run Serve as tuner's serving clusters do (its fast path, workers at nice
            # 0, HAProxy with its own ports and files): what a served trial measures is what a
            # deployment of it serves. The environment is restored at shutdown.
            from serving.deploy import serving_env
            from serving.ingress import new_directory, sweep_orphans

            sweep_orphans()
            self._haproxy_dir = new_directory()
            env = serving_env(haproxy_dir=self._haproxy_dir)
            if DRAINING_ENV not in os.environ:  # a user's own value wins
                env[DRAINING_ENV] = TRIAL_DRAINING_PERIOD_S
            changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
            self._saved_env = {k: os.environ.get(k) for k in changed}
            os.environ.update(changed)
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit(15)
        try:
            if address is None:
                ray.init(
                    address="local",  # a new cluster, never a stale one from /tmp/ray
                    num_cpus=num_cpus or os.cpu_count(),
                    num_gpus=num_gpus,  # None: the GPUs Ray detects; N: declare N (--num-gpus)
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
            else:
                if num_gpus is not None:
                    raise TunerError(f"Got --num-gpus {num_gpus} with --ray-address {address!r}. An existing "
                                     "cluster's GPUs are declared when its nodes start (ray start --num-gpus N); "
                                     "drop --num-gpus.")
                _check_reachable(address)
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
        finally:
            _restore_sigterm(sigterm)
        self.start_s = time.perf_counter() - t0
        self.nodes = self._probe_nodes()
        self.allocator = CoreAllocator(self.nodes)
        # One pool per cluster: idle actors hold Ray CPUs, so every runner must be able to evict them.
        self.pool = ActorPool()

    def _probe_nodes(self) -> list[NodeCores]:
        """Ask every node which host it is on and which cores it may use."""
        alive = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0, max_retries=1)(_probe)
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in alive
        ]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=60)
        answered = []
        for node, ref in zip(alive, refs):
            if ref not in ready:
                continue  # a dying node may not answer
            try:
                answered.append((node, ray.get(ref)))
            except RayError:
                continue  # it died between ray.nodes() and the probe: its cores are not offered
        self.gpu_nodes = frozenset(n["NodeID"] for n, _ in answered if float(n["Resources"].get("GPU", 0)) > 0)
        host_cores: dict[str, list[int]] = {}
        self.cpu_models: dict[str, str] = {}
        rows = []
        for node, (host, cores, model) in answered:
            host_cores[host] = sorted(set(host_cores.get(host, [])) | set(cores))
            self.cpu_models[node["NodeID"]] = model
            rows.append((node["NodeID"], host, int(node["Resources"].get("CPU", 0))))
        return split_host_cores(rows, host_cores)

    def refresh(self) -> None:
        """Re-learn the nodes after one left (or joined): cores of a dead node are never offered."""
        self.nodes = self._probe_nodes()
        self.allocator.set_nodes(self.nodes)

    def node_memory_bytes(self) -> list[int]:
        """Ray's `memory` resource of each alive node (what Ray offers tasks there)."""
        return [int(n["Resources"].get("memory", 0)) for n in ray.nodes() if n.get("Alive")
                and n["Resources"].get("memory")]

    def total_gpus(self) -> float:
        return sum(float(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive"))

    def probe_gpu(self, backend: str = "ort") -> tuple[GpuSetup | None, str]:
        """What gpu trials can run on: a probe task on a GPU node (the driver may have no GPU, or
        another runtime) reports the installed runtime; the note says what is missing, if anything."""
        gpus = self.total_gpus()
        facts = None
        if gpus > 0:
            probe = ray.remote(num_cpus=0, num_gpus=GPU_PROBE_SHARE, max_retries=1)(detect_runtime)
            ref = probe.remote()
            ready, _ = ray.wait([ref], timeout=60)
            if ready:
                try:
                    facts = ray.get(ref)
                except RayError:
                    facts = None
            else:
                ray.cancel(ref, force=True)
        return detect_gpu_setup(gpus, facts, backend)

    def info(self, fpga_devices: dict[str, int], gpu: GpuSetup | None = None, gpu_note: str = "") -> ClusterInfo:
        cpus = [len(n.cores) for n in self.nodes]
        return ClusterInfo(
            total_cpus=sum(cpus),
            max_node_cpus=max(cpus, default=0),
            total_gpus=self.total_gpus(),
            nodes=len(self.nodes),
            gpu_evaluator=gpu is not None,
            gpu_note="" if gpu is not None else gpu_note,
            fpga_devices=fpga_devices,
        )

    def hardware_key(self) -> str:
        """What a CPU measurement depends on: the CPU models of the nodes."""
        return " + ".join(sorted(set(self.cpu_models.values())))

    def describe(self) -> str:
        res = ray.cluster_resources()
        where = "local cluster started by tuner" if self.started_here else "existing cluster"
        usable = sum(len(n.cores) for n in self.nodes)
        return (
            f"Ray {ray.__version__}, {where}: {len(self.nodes)} node(s), {int(res.get('CPU', 0))} CPU "
            f"({usable} usable as exclusive cores), {int(res.get('GPU', 0))} GPU; {self.hardware_key()}"
        )

    def trial_serve(self, request_timeout_s: float = 30.0, host: str = "127.0.0.1") -> Any:
        """Ray Serve on this cluster for served trials (`serving.trial_serve.TrialServe`), started
        on first use on a free port of `host` (127.0.0.1 unless a client on another machine must
        reach it: `tuner.runner.served_client.endpoint_host`)."""
        if self._serve is None:
            from serving.trial_serve import TrialServe

            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            self._serve = TrialServe(port, request_timeout_s, host=host)
        return self._serve

    def release_serve_gpus(self) -> None:
        """Give back the GPUs a served trial's application holds (it stays up between served
        trials, to be reconfigured in place), so an engine-level GPU trial can place its actors."""
        if self._serve is not None:
            self._serve.release_gpus()

    def shutdown(self) -> None:
        if ray.is_initialized():
            if self._serve is not None:
                self._serve.shutdown()
                self._serve = None
            self.pool.shutdown()
            ray.shutdown()
        if self._haproxy_dir is not None:
            from serving.ingress import stop_haproxy

            stop_haproxy(self._haproxy_dir)
            self._haproxy_dir = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}


def _restore_sigterm(handler: Any) -> None:
    """Keep the caller's SIGTERM handling (tuner's: end the run like Ctrl-C, trials recorded)."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
