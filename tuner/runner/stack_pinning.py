"""Where a served trial's processes run while it is timed: each replica on cores of its own, and
the serving stack (HAProxy or Serve's proxy, and the load client in tuner's own process) on the
`serving.stack_cpus` cores left to it, as the engine level pins its replicas.

Left to the scheduler, the same served configuration moved between cores from one trial to the
next (the replica sharing a core with the client one time and not the next) and measured 12-21%
CV on this 2-core machine (experiments/repeatability.py); pinned, 5-7%. Every thread of each
process is pinned (a process's affinity is per thread in Linux), and the stack's old affinity
is restored after the trial, so the idle application and tuner's driver are not held to them.
Only processes on this machine can be pinned: a served trial's replicas on another node are
left as they are, and the record says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pinning:
    """Cores per replica pid and for the stack; `why` says why nothing was pinned."""

    replicas: dict[int, tuple[int, ...]] = field(default_factory=dict)
    stack: tuple[int, ...] = ()
    why: str | None = None

    @property
    def pinned(self) -> bool:
        return self.why is None

    def to_dict(self) -> dict:
        if not self.pinned:
            return {"pinned": False, "why": self.why}
        return {"pinned": True, "replica_cores": {str(p): list(c) for p, c in self.replicas.items()},
                "stack_cores": list(self.stack)}


def plan(cores: tuple[int, ...], replica_pids: list[int], threads: int, stack_cpus: int,
         replicas: int | None = None) -> Pinning:
    """The stack on the first `stack_cpus` cores, then `threads` cores per replica, in pid order;
    `replicas`: how many the trial has (fewer processes here: some run on another node)."""
    if not hasattr(os, "sched_setaffinity"):
        return Pinning(why="this platform cannot pin processes")
    if stack_cpus < 1:
        return Pinning(why="serving.stack_cpus is 0: the stack shares the replicas' cores")
    if not replica_pids or (replicas is not None and len(replica_pids) != replicas):
        return Pinning(why=f"{len(replica_pids)} replica process(es) on this machine for {replicas} replica(s): "
                           "the others run on another node")
    need = stack_cpus + threads * len(replica_pids)
    if need > len(cores):
        return Pinning(why=f"{len(replica_pids)} replica(s) x {threads} thread(s) + {stack_cpus} stack core(s) = "
                           f"{need} cores, and the node has {len(cores)}")
    rest = cores[stack_cpus:]
    return Pinning({pid: tuple(rest[i * threads:(i + 1) * threads]) for i, pid in enumerate(sorted(replica_pids))},
                   tuple(cores[:stack_cpus]))


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def set_affinity(pid: int, cores: tuple[int, ...]) -> None:
    """Pin every thread of `pid` to `cores` (threads that end meanwhile are skipped)."""
    for tid in _threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cores)


@contextlib.contextmanager
def pinned(pinning: Pinning, stack_pids: list[int], all_cores: tuple[int, ...]) -> Iterator[None]:
    """Apply `pinning` (the stack's processes: `stack_pids` and this one) for the block; then
    give every one of them all of `all_cores` again."""
    if not pinning.pinned:
        yield
        return
    stack = [*stack_pids, os.getpid()]
    for pid, cores in pinning.replicas.items():
        set_affinity(pid, cores)
    for pid in stack:
        set_affinity(pid, pinning.stack)
    try:
        yield
    finally:
        for pid in [*pinning.replicas, *stack]:
            set_affinity(pid, all_cores)
