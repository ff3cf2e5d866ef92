"""A pool of replica actors, each pinned to its cores for life and kept between trials.

Starting a worker process costs 0.4-2.5 s here, more than a short trial measures; an idle
actor whose cores and node match the next trial's is reused (the process, not its sessions:
an idle actor drops them, as their memory arenas keep the peak of the largest batch). Idle
actors still hold their Ray CPUs, so before a new actor is placed, idle actors on
overlapping cores are killed.
"""

from __future__ import annotations

import threading

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tuner.runner.cores import Placement
from tuner.evaluators.cpu import ReplicaBench

_RemoteBench = ray.remote(ReplicaBench)


class ActorPool:
    def __init__(self) -> None:
        self._idle: dict[Placement, ray.actor.ActorHandle] = {}
        self._busy: dict[int, ray.actor.ActorHandle] = {}  # in a running trial, by id()
        self._lock = threading.Lock()

    def make_room(self, placement: Placement) -> None:
        """Kill idle actors on `placement`'s node whose cores overlap it (they hold Ray CPUs)."""
        with self._lock:
            for p in [p for p in self._idle if p.node_id == placement.node_id and set(p.cores) & set(placement.cores)]:
                ray.kill(self._idle.pop(p), no_restart=True)

    def acquire(self, placements: list[Placement]) -> tuple[list, int]:
        """One actor per placement (reused when idle on exactly those cores); returns
        (actors, how many were reused)."""
        actors, reused = [], 0
        for p in placements:
            with self._lock:
                actor = self._idle.pop(p, None)
            if actor is not None:
                actors.append(actor)
                reused += 1
                continue
            self.make_room(p)
            actors.append(
                _RemoteBench.options(
                    num_cpus=len(p.cores),
                    max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(p.node_id, soft=False),
                ).remote(len(p.cores), list(p.cores))
            )
        with self._lock:
            self._busy.update((id(a), a) for a in actors)
        return actors, reused

    def release(self, placements: list[Placement], actors: list, healthy: bool) -> None:
        """Return healthy actors to the pool; kill the others (time-out, crash)."""
        with self._lock:
            for p, a in zip(placements, actors):
                self._busy.pop(id(a), None)
                if healthy:
                    a.trim.remote()  # an idle replica gives its sessions' memory back
                    self._idle[p] = a
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
