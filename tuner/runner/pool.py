"""A pool of replica processes (Ray actors), each pinned to its cores for life and kept between
trials.

Starting a worker process costs 0.4-2.5 s here, more than a short trial measures; an idle
actor whose cores, node, platform and bench key match the next trial's is reused (the process,
not its sessions: an idle actor drops them, as their memory arenas keep the peak of the largest
batch). Idle actors still hold their Ray CPUs (and GPUs), so before a new actor is placed, idle
actors on overlapping cores are killed, and before a GPU actor is placed, idle GPU actors of
its node.

Every actor is a `ReplicaHost`: it builds its evaluator's bench once, in its own process, and
runs the bench's methods by name, so the pool serves any `ReplicaEvaluator` alike.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.config import TrialConfig
from tuner.evaluators.base import ReplicaEvaluator
from tuner.runner.cores import Placement


class ReplicaHost:
    """One replica process: the bench its evaluator builds, pinned to its cores."""

    def __init__(self, evaluator: ReplicaEvaluator, config: TrialConfig, cores: Sequence[int]) -> None:
        self._bench = evaluator.make_bench(config, list(cores))

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self._bench, method)(*args)

    def trim(self) -> None:
        """Idle in the pool: give the sessions' memory back, when the bench can."""
        trim = getattr(self._bench, "trim", None)
        if trim is not None:
            trim()


_RemoteHost = ray.remote(ReplicaHost)
Key = tuple[Placement, str, Hashable]


class ActorPool:
    def __init__(self) -> None:
        self._idle: dict[Key, ray.actor.ActorHandle] = {}
        self._busy: dict[int, ray.actor.ActorHandle] = {}  # in a running trial, by id()
        self._gpu_keys: set[Key] = set()  # keys of idle actors that hold GPUs
        self._lock = threading.Lock()

    def make_room(self, placement: Placement) -> None:
        """Kill idle actors on `placement`'s node whose cores overlap it (they hold Ray CPUs)."""
        with self._lock:
            for key in [k for k in self._idle
                        if k[0].node_id == placement.node_id and set(k[0].cores) & set(placement.cores)]:
                ray.kill(self._idle.pop(key), no_restart=True)

    def free_gpus(self, node_id: str | None = None) -> None:
        """Kill idle actors that hold GPUs (on `node_id`, or anywhere): a GPU trial of another
        layout, or a served GPU trial, needs them."""
        with self._lock:
            for key in [k for k in self._idle if k in self._gpu_keys and (node_id is None or k[0].node_id == node_id)]:
                ray.kill(self._idle.pop(key), no_restart=True)
                self._gpu_keys.discard(key)

    def acquire(self, evaluator: ReplicaEvaluator, config: TrialConfig,
                placements: list[Placement]) -> tuple[list, int]:
        """One actor per placement (reused when idle on exactly those cores for the same
        evaluator and bench key); returns (actors, how many were reused)."""
        actors: list[Any] = []
        reused = 0
        for p in placements:
            key = (p, evaluator.platform, evaluator.bench_key(config))
            with self._lock:
                actor = self._idle.pop(key, None)
            if actor is not None:
                actors.append(actor)
                reused += 1
                continue
            self.make_room(p)
            extra = evaluator.actor_resources(config)
            if extra.get("num_gpus"):
                self.free_gpus(p.node_id)
            actors.append(
                _RemoteHost.options(
                    num_cpus=len(p.cores),
                    num_gpus=extra.get("num_gpus", 0),
                    max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(p.node_id, soft=False),
                ).remote(evaluator, config, list(p.cores))
            )
            if extra.get("num_gpus"):
                self._gpu_keys.add(key)
        with self._lock:
            self._busy.update((id(a), a) for a in actors)
        return actors, reused

    def release(self, evaluator: ReplicaEvaluator, config: TrialConfig, placements: list[Placement],
                actors: list, healthy: bool) -> None:
        """Return healthy actors to the pool; kill the others (time-out, crash)."""
        with self._lock:
            for p, a in zip(placements, actors):
                self._busy.pop(id(a), None)
                if healthy:
                    a.trim.remote()  # an idle replica gives its sessions' memory back
                    self._idle[(p, evaluator.platform, evaluator.bench_key(config))] = a
                else:
                    ray.kill(a, no_restart=True)

    def shutdown(self) -> None:
        with self._lock:
            for a in self._idle.values():
                ray.kill(a, no_restart=True)
            self._idle.clear()

    def abort(self) -> None:
        """Kill every actor, in running trials too (their waits end at once with an error)."""
        self.shutdown()
        with self._lock:
            for a in self._busy.values():
                ray.kill(a, no_restart=True)
            self._busy.clear()
