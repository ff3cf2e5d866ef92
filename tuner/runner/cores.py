"""Exclusive cores for trials: which cores of which node each replica is pinned to. Pure.

With `exclusive=True` a reservation also takes its hosts whole: no other trial runs on a
machine while it measures there (`tuner tune --exclusive-hosts`), for machines whose cores
disturb each other. On this project's VM, distinct cores were enough: a trial measured beside
another differed by +2% (throughput) and +6% (p95) from the same trial alone, on the same core
(experiments/results/interference.json).

Ray counts CPUs per node but does not say which cores a worker runs on, and several Ray
nodes may share one machine (a test cluster, or containers on one host). So the cores of
each host are split between the nodes on it, in proportion to their Ray CPUs and never more
than the host has; a node's usable CPUs are its share. A trial gets, for every replica, a
set of distinct cores on one node; cores held by a running trial are given to no other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeCores:
    """A node and the host cores it may use."""

    node_id: str
    host: str
    cores: tuple[int, ...]


@dataclass(frozen=True)
class Placement:
    """Where one replica runs: a node and the cores it is pinned to."""

    node_id: str
    cores: tuple[int, ...]


def split_host_cores(nodes: list[tuple[str, str, int]], host_cores: dict[str, list[int]]) -> list[NodeCores]:
    """Give each node (id, host, Ray CPUs) its own slice of its host's cores.

    Nodes are served in id order; a node never gets more cores than its Ray CPUs, and the
    nodes of one host never get more than the host has (later nodes may get fewer).
    """
    out = []
    offset: dict[str, int] = {}
    for node_id, host, cpus in sorted(nodes):
        cores = host_cores.get(host, [])
        start = offset.get(host, 0)
        take = tuple(cores[start : start + max(0, int(cpus))])
        offset[host] = start + len(take)
        out.append(NodeCores(node_id, host, take))
    return out


@dataclass
class CoreAllocator:
    """Thread-safe reservations of cores; `reserve` waits until a layout fits."""

    nodes: list[NodeCores]
    _busy: set[tuple[str, int]] = field(default_factory=set)
    _held: dict[str, int] = field(default_factory=dict)  # host -> exclusive reservations on it
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def set_nodes(self, nodes: list[NodeCores]) -> None:
        """Replace the node list (a node left or joined); running reservations stay held."""
        with self._cond:
            self.nodes = list(nodes)
            self._cond.notify_all()

    def busy_nodes(self) -> set[str]:
        with self._cond:
            return {node for node, _core in self._busy}

    def free_cores(self) -> int:
        """Cores no running trial holds, over the whole cluster."""
        with self._cond:
            live = {(n.node_id, c) for n in self.nodes for c in n.cores}
            return len(live - self._busy)

    def usable_cpus(self) -> dict[str, int]:
        return {n.node_id: len(n.cores) for n in self.nodes}

    def can_ever_fit(self, replicas: int, threads: int, only: frozenset[str] | None = None) -> bool:
        """Whether the layout fits the empty cluster (else waiting for it would never end);
        `only`: the node ids it may use (e.g. the nodes with GPUs), None for any."""
        with self._cond:
            return self._place(replicas, threads, busy=set(), held={}, only=only) is not None

    def try_reserve(self, replicas: int, threads: int, exclusive: bool = False) -> list[Placement] | None:
        with self._cond:
            return self._take(self._place(replicas, threads, self._busy, exclusive), exclusive)

    def reserve(self, replicas: int, threads: int, timeout_s: float | None = None,
                exclusive: bool = False, only: frozenset[str] | None = None) -> list[Placement] | None:
        """Reserve cores for every replica, waiting for running trials to release them."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._place(replicas, threads, self._busy, exclusive, only=only) is not None, timeout_s)
            if not ok:
                return None
            return self._take(self._place(replicas, threads, self._busy, exclusive, only=only), exclusive)

    def release(self, placement: list[Placement], exclusive: bool = False) -> None:
        with self._cond:
            self._busy -= {(p.node_id, c) for p in placement for c in p.cores}
            if exclusive:
                for host in self._hosts(placement):
                    self._held[host] -= 1
                    if not self._held[host]:
                        del self._held[host]
            self._cond.notify_all()

    def _hosts(self, placement: list[Placement]) -> set[str]:
        host_of = {n.node_id: n.host for n in self.nodes}
        return {host_of.get(p.node_id, "?") for p in placement}

    def _take(self, placement: list[Placement] | None, exclusive: bool) -> list[Placement] | None:
        if placement is not None:
            self._busy |= {(p.node_id, c) for p in placement for c in p.cores}
            if exclusive:
                for host in self._hosts(placement):
                    self._held[host] = self._held.get(host, 0) + 1
        return placement

    def _place(self, replicas: int, threads: int, busy: set[tuple[str, int]],
               exclusive: bool = False, held: dict[str, int] | None = None,
               only: frozenset[str] | None = None) -> list[Placement] | None:
        """First fit, filling the node with the most free cores first (spreads parallel trials).
        A host held by an exclusive trial takes nothing else; an exclusive trial takes only
        hosts where nothing runs."""
        held = self._held if held is None else held
        busy_hosts = {n.host for n in self.nodes for c in n.cores if (n.node_id, c) in busy}
        usable = [n for n in self.nodes if n.host not in held and not (exclusive and n.host in busy_hosts)
                  and (only is None or n.node_id in only)]
        free = {n.node_id: [c for c in n.cores if (n.node_id, c) not in busy] for n in usable}
        out: list[Placement] = []
        for _ in range(replicas):
            node = max(free, key=lambda k: (len(free[k]), k), default=None)
            if node is None or len(free[node]) < threads:
                return None
            cores, free[node] = free[node][:threads], free[node][threads:]
            out.append(Placement(node, tuple(cores)))
        return out
