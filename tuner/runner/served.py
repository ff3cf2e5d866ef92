"""Served trials on the Ray cluster: the configuration deployed as the Ray Serve application that
`tuner promote` writes, on this cluster's own Serve (applied in place where Serve can), and timed
end to end over HTTP by a load client (`tuner.evaluators.served.ServedBench`): in this process by
default, or on another node (`serving.client_node: other`, `tuner.runner.served_client`).

A served trial takes its whole node, on tuner's own machine (the replicas read the model file
from its disk; on a cluster of several nodes they are pinned to the node reserved): the
application, HAProxy and a client on the same node share it, and what they cost each other is
part of the figure. Served trials therefore run one at a time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Protocol

import psutil

from serving.options import GpuServing, ServedModel, ServingOptions
from serving.serve_config import make_serve_config
from serving.trial_serve import replica_pids, serve_path, stack_processes
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.evaluators.gpu import GpuSetup
from tuner.evaluators.served import Endpoint, ServedBench, ServedEvaluator
from tuner.evaluators.windows import run_protocol
from tuner.metrics import PerfResult
from tuner.models.prepare import PreparedModel
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.pool import ActorPool
from tuner.runner.served_client import ClientHolder, RemoteServedBench, endpoint_host
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings

APP_NAME = "tuner-trial"
#: The served level's warm-up, untimed: steps of PREWARM_STEP_S until two in a row agree
#: on the request rate within PREWARM_AGREE (a replica that has just started or loaded a new
#: session is slow at first), at least two steps and at most PREWARM_MAX_S.
PREWARM_STEP_S = 0.25
PREWARM_MAX_S = 1.0
PREWARM_AGREE = 0.2
#: A served trial in which more than this share of requests fails cannot serve its load.
FAILED_SHARE_MAX = 0.01


def _cpu_seconds(pids: list[int] | set[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots by the processes alive at both (HAProxy reloads
    replace its process; a replaced one is not counted)."""
    return sum(max(0.0, after[pid] - before[pid]) for pid in before if pid in after)


def gpu_serving(setup: GpuSetup | None, config: TrialConfig) -> GpuServing | None:
    """A gpu trial's GPU share and providers for its Serve application (None for cpu)."""
    if config.platform != "gpu":
        return None
    if setup is None:
        raise TrialFailed("platform 'gpu' has no GPU setup on this cluster")
    return GpuServing(setup.layout(config).num_gpus_per_replica, setup.providers(config.precision))


def engine_summary(engine: PerfResult) -> dict[str, Any]:
    return {"throughput_rps": engine.throughput_rps, "latency_p50_ms": engine.latency_p50_ms,
            "latency_p95_ms": engine.latency_p95_ms, "latency_p99_ms": engine.latency_p99_ms,
            "stable": engine.details.get("stable"), "requests": engine.details.get("requests"),
            "measuring_s": engine.details.get("measuring_s"), "trial_wall_s": engine.details.get("trial_wall_s")}


def prewarm(bench: ServedBench | RemoteServedBench, load: LoadSpec) -> tuple[float, float | None]:
    """Untimed load until the endpoint's rate settles (see PREWARM_STEP_S): the served level's
    warm-up. Returns (its seconds, the request rate of its last step; None in server mode).

    Connections open and the replicas' first batches form before the windows, which are sized
    from the rate seen at the end of it (a cold start read 10x too slow). In server mode the rate
    is the load's own, so two steps open the connections and fill the batches.
    """
    t0 = time.perf_counter()
    if load.mode != "offline":
        assert load.target_rps is not None  # LoadSpec refuses server mode without a rate
        bench.serve_for(2 * PREWARM_STEP_S, load.target_rps, 0.0, 0)
        return time.perf_counter() - t0, None
    last = None
    while True:
        window = bench.run_for(PREWARM_STEP_S, 1)
        rate = len(window.latencies_s) / window.elapsed_s if window.elapsed_s > 0 else 0.0
        if last is not None and rate > 0 and abs(rate - last) <= PREWARM_AGREE * max(rate, last):
            break
        if time.perf_counter() - t0 + PREWARM_STEP_S > PREWARM_MAX_S:
            break
        last = rate
    return time.perf_counter() - t0, rate


class ServedHost(Protocol):
    """What served trials take from their runner (`tuner.runner.trial.RayRunner` has it all)."""

    model: PreparedModel
    settings: MeasurementSettings
    load: LoadSpec
    cluster: RayCluster
    served: ServedSettings
    gpu: GpuSetup | None

    @property
    def pool(self) -> ActorPool: ...


class ServedTrials:
    """Runs served trials for one runner (thread-safe: one at a time)."""

    def __init__(self, runner: ServedHost) -> None:
        self.runner = runner
        self._lock = threading.Lock()
        self._client = ClientHolder(runner.served.client_node, runner.served.binary, runner.cluster.allocator)

    def run(self, evaluator: ServedEvaluator, config: TrialConfig, engine: PerfResult | None) -> PerfResult:
        r = self.runner
        alloc = r.cluster.allocator
        # The replicas read the model file from this machine's disk: they run on a node of it.
        here = frozenset(n.node_id for n in r.cluster.nodes if n.host == socket.gethostname() and n.cores)
        if not here:
            raise TrialFailed(f"served trials run their replicas on tuner's own machine ({socket.gethostname()}, "
                              "where the model file is), and no node of this cluster there has cores; run tuner on a "
                              "node with cores, or measure at the engine level (--measure engine)")
        whole = max(n for node, n in alloc.usable_cpus().items() if node in here)
        with self._lock:
            placement = alloc.reserve(1, whole, exclusive=True, only=here)  # the whole node
            assert placement is not None
            try:
                return self._measure(evaluator, config, engine, placement[0].node_id)
            finally:
                alloc.release(placement, exclusive=True)

    def _measure(self, evaluator: ServedEvaluator, config: TrialConfig, engine: PerfResult | None,
                 node_id: str) -> PerfResult:
        r = self.runner
        t0 = time.perf_counter()
        try:
            serve = r.cluster.trial_serve(host=endpoint_host(r.served.client_node, r.cluster.nodes))
            variant = r.model.variants[config.precision]
            gpu = gpu_serving(r.gpu, config)
            if gpu is not None:
                r.pool.free_gpus()  # idle engine-level GPU actors hold the GPUs the replicas need
            options = ServingOptions(port=serve.port, app_name=APP_NAME,
                                     batch_wait_timeout_s=r.load.batch_wait_timeout_s, gpu=gpu)
            serve_config = make_serve_config(
                config, ServedModel(r.model.name, variant.path, {s.name: list(s.shape) for s in r.model.inputs}), options)
            # The one difference from what promote writes: the replicas claim no Ray CPUs here.
            # tuner's core reservation (the whole node, above) keeps other trials off while this
            # one measures, and between served trials the idle application must not hold the Ray
            # CPUs that engine trials' actors need (it stays up so the next trial reconfigures it).
            actor_options = serve_config["applications"][0]["deployments"][0]["ray_actor_options"]
            actor_options["num_cpus"] = 0
            if len(r.cluster.nodes) > 1:  # on the node reserved for it (Ray's node-id label)
                actor_options["label_selector"] = {"ray.io/node-id": node_id}
            applied = serve.apply(serve_config, timeout_s=r.settings.trial_timeout_s)
        except TunerError as exc:
            raise TrialFailed(f"could not deploy on Ray Serve: {exc}") from None
        deployment = serve_config["applications"][0]["deployments"][0]
        concurrency = evaluator.concurrency(config, int(deployment["max_ongoing_requests"]), r.served.concurrency)
        bench, where = self._client.acquire(r.cluster.nodes, node_id, concurrency)
        bench.prepare(f"{serve.base_url}/{r.model.name}", Endpoint(serve.base_url, r.model.name), r.model.inputs,
                      r.served.instances_per_request)
        prewarm_s, warmed_rate = prewarm(bench, r.load)
        bench.reset_failures()
        replicas = replica_pids()
        stack = stack_processes()
        proxies = stack["proxy"]
        bench.set_stack_pids(tuple(sorted({*proxies, *replicas})))
        client = bench.info()
        # The interference probe watches this machine's cores: the client's too when it runs here.
        watched = client if client["node"] == socket.gethostname() else {
            "node": socket.gethostname(), "pid": None, "stack_pids": client["stack_pids"],
            "cpu_ids": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
        cpu0, client_cpu0 = (_cpu_seconds(proxies), _cpu_seconds(replicas)), bench.cpu_seconds()
        wall0 = time.perf_counter()

        def broadcast(method: str, args: tuple | list) -> list:
            if method == "info":
                return [watched]
            return [getattr(bench, method)(*(args[0] if isinstance(args, list) else args))]

        # The prewarm was the warm-up (server mode keeps the protocol's: its windows are sized from
        # the offered rate, and the warm-up fills the batches at it).
        result = run_protocol(broadcast, r.settings, r.load, warmed_rate_rps=warmed_rate)
        wall = time.perf_counter() - wall0
        cpu1, client_cpu1 = (_cpu_seconds(proxies), _cpu_seconds(replicas)), bench.cpu_seconds()
        sent, failed, by_kind, errors = bench.failures()
        if sent and failed / sent > FAILED_SHARE_MAX:
            raise TrialFailed(f"the endpoint failed {failed} of {sent} requests at this load ({by_kind}; first: "
                              f"{'; '.join(errors[:2])})", infeasible=True)
        cores = {name: round(_used(a, b) / wall, 3) for name, a, b in zip(("proxy", "replicas"), cpu0, cpu1)}
        cores["client"] = round(max(0.0, client_cpu1 - client_cpu0) / wall, 3)
        # stack's replica pids: those alive at the end (a downscale's surplus replicas have left by then).
        result.details.update(
            level="served", deploy_s=round(applied.seconds, 3), replicas_restarted=applied.restarted,
            prewarm_s=round(prewarm_s, 3), serve_path=serve_path(stack),
            concurrency=concurrency if r.load.mode == "offline" else None,
            instances_per_request=r.served.instances_per_request, binary=r.served.binary,
            requests_failed=failed, failed_by_kind=by_kind, stack_cores_used=cores,
            stack={"proxy_pids": proxies, "replica_pids": sorted(replicas & replica_pids()), "endpoint": serve.base_url,
                   "client": client},
            client_placement=where.record(),
            serve_deployment={k: v for k, v in deployment.items() if k != "user_config"},
            ray_cpus_declared=0,
            trial_wall_s=round(time.perf_counter() - t0, 3),
        )
        if r.gpu is not None and config.platform == "gpu":
            replicas_info = (engine.details.get("replicas") or []) if engine is not None else []
            result.details["gpu"] = r.gpu.record(config, replicas_info)
        if engine is not None:
            result.details["engine"] = engine_summary(engine)
            result.details["serving_efficiency"] = round(result.throughput_rps / engine.throughput_rps, 4)
        return result

    def close(self) -> None:
        self._client.close()
