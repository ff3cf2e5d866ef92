"""Interference: how much of a measuring window's machine went to work other than tuner's.

Around each window the probe reads this node's per-core counters (`/proc/stat`), the CPU
pressure stall (`/proc/pressure/cpu`, where the kernel has it) and memory (`/proc/meminfo`), and
the CPU time and resident memory of tuner's own processes: this process, everything it started
(the local Ray cluster: its daemons, the replicas, HAProxy) and the trial's replicas by pid (on
a cluster joined by address). What the counters show beyond tuner's own processes is other work.

- `others_share`: of the trial's cores' time over the window (the cores its replicas are pinned
  to; every core of the node when they are not pinned, as in a served trial), the share that
  went to other processes. tuner's processes pinned away from those cores are left out; those
  that may run anywhere (the driver, Ray's daemons) are counted as if they ran there, so this is
  a lower bound.
- `pressure_share`: the share of the window in which some runnable task waited for a CPU.
- `others_memory_gib`: memory in use on the node that tuner's processes do not hold.

A window whose `others_share` is above `MeasurementSettings.interference_share_max` is
disturbed: `windows.run_protocol` leaves it out and measures another (bounded).
Only the node this process runs on can be read: a trial whose replicas run elsewhere is not
probed (its record says so).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PROC_STAT = Path("/proc/stat")
PROC_PRESSURE_CPU = Path("/proc/pressure/cpu")
PROC_MEMINFO = Path("/proc/meminfo")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Ours:
    """tuner's own processes at one instant: CPU seconds by pid (of those that may run on the
    trial's cores), every pid, and resident memory."""

    cpu_s: dict[int, float]
    rss_bytes: int
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    core_busy_ticks: dict[int, int]
    pressure_us: int | None
    ours: Ours
    everyone: dict[int, tuple[str, float]]  # pid: (name, CPU seconds), every process of the node


@dataclass(frozen=True)
class WindowInterference:
    """Other work during one window (see the module's docstring)."""

    others_share: float
    pressure_share: float | None
    others_memory_gib: float
    cores: tuple[int, ...]
    top_others: tuple[str, ...] = ()  # the other processes that used most CPU, "name (pid N): X cores"


def core_busy_ticks(stat_text: str) -> dict[int, int]:
    """Busy clock ticks per core from /proc/stat: all but idle and iowait."""
    out = {}
    for line in stat_text.splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            fields = [int(v) for v in values[:8]]
            out[int(name[3:])] = sum(fields) - fields[3] - fields[4]
    return out


def pressure_total_us(text: str) -> int | None:
    """The cumulative 'some' stall of /proc/pressure/cpu, in microseconds."""
    for line in text.splitlines():
        if line.startswith("some"):
            return int(line.rsplit("total=", 1)[1])
    return None


def meminfo_kib(meminfo_text: str) -> dict[str, int]:
    """/proc/meminfo's fields, in KiB."""
    return {line.split(":")[0]: int(line.split()[1]) for line in meminfo_text.splitlines() if ":" in line}


def used_memory_gib(meminfo_text: str) -> float:
    kib = meminfo_kib(meminfo_text)
    return (kib.get("MemTotal", 0) - kib.get("MemAvailable", 0)) / 2**20


def others_share(busy_ticks: int, ours_cpu_s: float, wall_s: float, cores: int, ticks_per_s: int = CLOCK_TICKS) -> float:
    """The share of `cores` cores' time over `wall_s` that processes other than ours used."""
    if wall_s <= 0 or cores <= 0:
        return 0.0
    return max(0.0, min(1.0, (busy_ticks / ticks_per_s - ours_cpu_s) / (wall_s * cores)))


class Probe:
    """Reads this node around one window at a time; `cores` are the trial's (None: all)."""

    def __init__(self, cores: tuple[int, ...] | None = None, pids: tuple[int, ...] = ()) -> None:
        self.available = PROC_STAT.is_file()
        self.pids = pids
        all_cores = tuple(sorted(core_busy_ticks(PROC_STAT.read_text()))) if self.available else ()
        self.cores = tuple(c for c in cores if c in all_cores) if cores else all_cores
        self.cores = self.cores or all_cores

    def _ours(self) -> Ours:
        me = psutil.Process()
        procs = {me.pid: me}
        with contextlib.suppress(psutil.Error):
            procs.update({p.pid: p for p in me.children(recursive=True)})
        for pid in self.pids:
            if pid not in procs:
                try:
                    procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
        cpu, rss = {}, 0
        watched = set(self.cores)
        for pid, proc in procs.items():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    if watched and not watched & set(proc.cpu_affinity() or watched):
                        continue  # pinned to other cores: its CPU time is not on the trial's cores
                    t = proc.cpu_times()
                    cpu[pid] = t.user + t.system
            except psutil.Error:
                continue
        return Ours(cpu, rss, frozenset(procs))

    def begin(self) -> Snapshot | None:
        if not self.available:
            return None
        pressure = pressure_total_us(PROC_PRESSURE_CPU.read_text()) if PROC_PRESSURE_CPU.is_file() else None
        everyone = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            t = proc.info["cpu_times"]
            if t is not None:
                everyone[proc.pid] = (proc.info["name"] or "?", t.user + t.system)
        return Snapshot(time.perf_counter(), core_busy_ticks(PROC_STAT.read_text()), pressure, self._ours(), everyone)

    def end(self, before: Snapshot | None) -> tuple[WindowInterference | None, Snapshot | None]:
        """What the window since `before` saw, and the snapshot taken now: the next window's
        `before` (windows follow each other, so one snapshot ends one and begins the next)."""
        if before is None:
            return None, None
        after = self.begin()
        assert after is not None
        wall = after.wall_s - before.wall_s
        busy = sum(after.core_busy_ticks.get(c, 0) - before.core_busy_ticks.get(c, 0) for c in self.cores)
        # Ours, counted on the trial's cores: every process alive at both ends that may run there.
        ours = sum(max(0.0, after.ours.cpu_s[p] - before.ours.cpu_s[p]) for p in before.ours.cpu_s
                   if p in after.ours.cpu_s)
        pressure = None
        if before.pressure_us is not None and after.pressure_us is not None and wall > 0:
            pressure = max(0.0, min(1.0, (after.pressure_us - before.pressure_us) / 1e6 / wall))
        mem = used_memory_gib(PROC_MEMINFO.read_text()) - after.ours.rss_bytes / 2**30 if PROC_MEMINFO.is_file() else 0.0
        used = sorted(((after.everyone[p][1] - cpu, p) for p, (_, cpu) in before.everyone.items()
                       if p in after.everyone and p not in after.ours.pids), reverse=True)
        top = tuple(f"{after.everyone[p][0]} (pid {p}): {d / wall:.2f} cores" for d, p in used[:3] if d / wall >= 0.05)
        return WindowInterference(others_share(busy, ours, wall, len(self.cores)), pressure, max(0.0, mem), self.cores,
                                  top), after


def probe_for(replicas: list[dict]) -> Probe | None:
    """A probe of the trial's cores, from its replicas' `info()` (node, pid, cpu_ids); None when
    a replica runs on another machine than this process (its counters cannot be read here)."""
    import socket

    if not PROC_STAT.is_file() or any(r.get("node") != socket.gethostname() for r in replicas):
        return None
    cores = sorted({c for r in replicas for c in (r.get("cpu_ids") or [])})
    pids = {int(p) for r in replicas for p in [r.get("pid"), *(r.get("stack_pids") or [])] if p}
    return Probe(tuple(cores) or None, tuple(sorted(pids)))


def summary(used: list[WindowInterference | None], left_out: list[WindowInterference], share_max: float) -> dict:
    """A trial's `interference` record: what its reported windows and the windows left out saw."""
    seen = [w for w in used if w is not None]
    if not seen:
        return {"probed": False, "why": "the trial's replicas run on another machine than tuner's driver"}
    shares = sorted(w.others_share for w in seen)
    pressures = sorted(w.pressure_share for w in seen if w.pressure_share is not None)
    return {
        "probed": True,
        "disturbed": shares[-1] > share_max,
        "share_max": share_max,
        "cores": list(seen[0].cores),
        "others_share": [round(s, 4) for s in (w.others_share for w in seen)],
        "others_share_max": round(shares[-1], 4),
        "pressure_share_median": round(pressures[len(pressures) // 2], 4) if pressures else None,
        "others_memory_gib_max": round(max(w.others_memory_gib for w in seen), 3),
        "top_others": list(max([*seen, *left_out], key=lambda w: w.others_share).top_others),
        "windows_left_out": len(left_out),
        "left_out_others_share": [round(w.others_share, 4) for w in left_out],
    }


#: The share of the machine's memory other processes must hold to take the blame for an
#: out-of-memory kill whose size is unknown (`MemoryHeld.others_to_blame`).
OTHERS_SHARE_MIN = 0.25


@dataclass(frozen=True)
class MemoryHeld:
    """Memory in use on this node now: by tuner's processes and by everything else, GiB."""

    ours_gib: float
    others_gib: float
    total_gib: float

    def others_to_blame(self, request_gib: float | None = None) -> bool:
        """Whether an out-of-memory failure says more about the machine than the configuration.

        `request_gib`: the allocation that failed, when known (ONNX Runtime names its size). Then
        the others are to blame only when it would have fit had their memory been free and does
        not fit beside it: a request larger than the machine less tuner's own use is the
        configuration's, however busy the machine. Unknown (Ray's memory monitor killed a worker):
        when the others hold more than tuner does and at least OTHERS_SHARE_MIN of the machine
        (on a quiet machine the system's own processes hold some: 1.4 of 23.5 GiB here)."""
        if request_gib is not None:
            room_without_others_gib = self.total_gib - self.ours_gib
            return room_without_others_gib - self.others_gib < request_gib <= room_without_others_gib
        return self.others_gib > self.ours_gib and self.others_gib >= OTHERS_SHARE_MIN * self.total_gib

    def describe(self) -> str:
        return (f"other processes on this machine hold {self.others_gib:.1f} GiB of its {self.total_gib:.1f} GiB, "
                f"tuner's own {self.ours_gib:.1f} GiB")


def memory_held(pids: tuple[int, ...] = ()) -> MemoryHeld | None:
    """What tuner's processes (this one, its descendants, `pids`) and the others hold now."""
    if not PROC_MEMINFO.is_file():
        return None
    text = PROC_MEMINFO.read_text()
    kib = meminfo_kib(text)
    ours = Probe(None, pids)._ours().rss_bytes / 2**30 if PROC_STAT.is_file() else 0.0
    return MemoryHeld(ours, max(0.0, used_memory_gib(text) - ours), kib.get("MemTotal", 0) / 2**20)
