"""Where a served trial's load client runs (`serving.client_node` of the search space).

- ``same`` (default): in tuner's own process, on the trial's node. The client, the HTTP proxy and
  the replicas share that node's cores, and what they cost each other is part of the figure.
- ``other``: a Ray actor on another node of the cluster, as a load generator on a client machine
  drives a real endpoint. A node on another machine is preferred; there the client gets one core
  of its own (reserved like a trial's, so no engine trial shares it) and the endpoint must be
  reachable over the cluster's network. A node on the trial's own machine (Ray's local
  multi-node clusters) takes none: the served trial holds that machine whole, and the record
  says the client shared it.

Every served trial records `client_placement` (`ClientPlacement.record`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.errors import TunerError
from tuner.evaluators.served import ServedBench
from tuner.evaluators.windows import WindowSample
from tuner.models.spec import InputSpec
from tuner.runner.cores import CoreAllocator, NodeCores, Placement


@dataclass(frozen=True)
class ClientPlacement:
    """Where the client runs relative to the trial's replicas."""

    requested: str  # "same" | "other"
    node_id: str
    host: str
    replicas_node_id: str
    replicas_host: str
    cores: tuple[int, ...] | None  # the client's reserved cores (another machine); None: none reserved

    @property
    def where(self) -> str:
        if self.node_id == self.replicas_node_id:
            return "same node"
        return "other node, same machine" if self.host == self.replicas_host else "other machine"

    def record(self) -> dict[str, Any]:
        return {"requested": self.requested, "where": self.where, "node_id": self.node_id, "host": self.host,
                "replicas_node_id": self.replicas_node_id, "replicas_host": self.replicas_host,
                "cores_reserved": list(self.cores) if self.cores is not None else None}


def check_client_node(requested: str, nodes: list[NodeCores]) -> None:
    """Refuse `client_node: other` on a cluster of one node, before any trial runs."""
    if requested == "other" and len(nodes) < 2:
        raise TunerError(
            f"Got serving.client_node = 'other', but this Ray cluster has {len(nodes)} node(s): the load client "
            "needs a node other than the replicas'. Set serving: {client_node: same} in the search space, or "
            "tune on a cluster of two nodes or more (--ray-address).")


def pick_client_node(nodes: list[NodeCores], trial_node: str) -> NodeCores:
    """The node for a client on another node: one on another machine if any (most cores first)."""
    host_of = {n.node_id: n.host for n in nodes}
    others = [n for n in nodes if n.node_id != trial_node]
    if not others:
        raise TunerError("serving.client_node = 'other' needs a second node, and the cluster has only the trial's.")
    return max(others, key=lambda n: (n.host != host_of.get(trial_node), len(n.cores), n.node_id))


def endpoint_host(requested: str, nodes: list[NodeCores]) -> str:
    """The address Serve's HTTP proxy binds to for served trials: 127.0.0.1 unless a client on
    another machine must reach it; then the head node's cluster address (the proxy runs there)."""
    if requested != "other" or len({n.host for n in nodes}) < 2:
        return "127.0.0.1"
    return str(ray.get_runtime_context().gcs_address).rpartition(":")[0]


class RemoteServedBench:
    """A `ServedBench` in a Ray actor pinned to one node, with the same methods (each a round trip)."""

    def __init__(self, node_id: str, concurrency: int, binary: bool, cores: tuple[int, ...] | None) -> None:
        actor = ray.remote(ServedBench).options(
            num_cpus=0, max_restarts=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        self.node_id = node_id
        self._actor: Any = actor.remote(concurrency, binary, cpu_ids=cores)

    def prepare(self, key: str, model: Any, inputs: tuple[InputSpec, ...], batch_size: int) -> bool:
        return bool(ray.get(self._actor.prepare.remote(key, model, inputs, batch_size)))

    def set_concurrency(self, concurrency: int) -> None:
        ray.get(self._actor.set_concurrency.remote(concurrency))

    def set_stack_pids(self, pids: tuple[int, ...]) -> None:
        ray.get(self._actor.set_stack_pids.remote(pids))

    def cpu_seconds(self) -> float:
        return float(ray.get(self._actor.cpu_seconds.remote()))

    def info(self) -> dict[str, Any]:
        return dict(ray.get(self._actor.info.remote()))

    def run_for(self, seconds: float, min_calls: int) -> WindowSample:
        return ray.get(self._actor.run_for.remote(seconds, min_calls))

    def serve_for(self, seconds: float, rate_rps: float, max_wait_s: float, seed: int) -> WindowSample:
        return ray.get(self._actor.serve_for.remote(seconds, rate_rps, max_wait_s, seed))

    def failures(self) -> tuple[int, int, dict[str, int], list[str]]:
        return ray.get(self._actor.failures.remote())

    def reset_failures(self) -> None:
        ray.get(self._actor.reset_failures.remote())

    def close(self) -> None:
        try:
            ray.get(self._actor.close.remote(), timeout=10)
        finally:
            ray.kill(self._actor)


class ClientHolder:
    """The served trials' load client, kept across trials (its connections stay open), and the
    core it holds on another machine."""

    def __init__(self, requested: str, binary: bool, alloc: CoreAllocator) -> None:
        self.requested, self.binary, self.alloc = requested, binary, alloc
        self.bench: ServedBench | RemoteServedBench | None = None
        self._reserved: list[Placement] | None = None

    def acquire(self, nodes: list[NodeCores], trial_node: str,
                concurrency: int) -> tuple[ServedBench | RemoteServedBench, ClientPlacement]:
        host_of = {n.node_id: n.host for n in nodes}
        if self.requested == "same":
            if self.bench is None:
                self.bench = ServedBench(concurrency, self.binary)
            node, host, cores = trial_node, socket.gethostname(), None
        else:
            target = pick_client_node(nodes, trial_node)
            if not isinstance(self.bench, RemoteServedBench) or self.bench.node_id != target.node_id:
                self.close()
                if target.host != host_of.get(trial_node) and target.cores:
                    self._reserved = self.alloc.reserve(1, 1, only=frozenset({target.node_id}))
            node, host = target.node_id, target.host
            cores = self._reserved[0].cores if self._reserved else None
            if self.bench is None:  # new, or closed above for another node
                self.bench = RemoteServedBench(target.node_id, concurrency, self.binary, cores)
        self.bench.set_concurrency(concurrency)
        return self.bench, ClientPlacement(self.requested, node, host, trial_node,
                                           host_of.get(trial_node, socket.gethostname()), cores)

    def close(self) -> None:
        if self.bench is not None:
            self.bench.close()
            self.bench = None
        if self._reserved is not None:
            self.alloc.release(self._reserved)
        self._reserved = None
