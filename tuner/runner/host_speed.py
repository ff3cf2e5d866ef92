"""How steady this machine's CPUs are: the floor under every figure measured on it.

A fixed amount of pure-Python work is timed block after block by processes pinned to cores:
one on the first core alone, then one on every core at once. With nothing else running every
block should take the same time; what varies is the machine itself: a VM's host lending its
cores to others, frequency changes. The guest's CPU accounting may not see it (no steal
time, the worker's CPU time equals wall time), so neither tuner's interference probe nor CPU
pressure can tell such a window from a quiet one. A measuring window of W seconds cannot be
steadier than the machine's speed over W seconds; `tuner check-machine` prints that floor.

This module measures the machine only; it knows nothing of trials.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

SLOW_SHARE = 0.85  # a block slower than this share of the core's 90th-percentile speed is "slow"
BLOCKS_S = (0.25, 1.0, 4.0)  # the block lengths whose CV is reported
STEADY_CV_4S_PCT = 5.0  # a 4 s CV above this: figures here cannot be held to 5%
BUSY_CPU_PER_WALL = 0.95  # a worker that got less of its core than this shared it with other work
MIN_SECONDS = 8.0  # two 4 s blocks at least


@dataclass(frozen=True)
class CoreSpeed:
    """One core's speed over a run: fixed work units per second, per block."""

    condition: str  # "alone" (the other cores idle) or "all cores" (every core busy)
    core: int
    step_s: float
    rates_per_s: tuple[float, ...]
    cpu_s_per_wall_s: float  # the worker's CPU time over wall time: 1.0 when the guest sees no loss

    def cv_pct(self, block_s: float) -> float:
        """Coefficient of variation of the speed over blocks of `block_s` seconds."""
        k = max(1, round(block_s / self.step_s))
        blocks = [statistics.fmean(self.rates_per_s[i:i + k]) for i in range(0, len(self.rates_per_s) - k + 1, k)]
        return 100 * statistics.pstdev(blocks) / statistics.fmean(blocks) if len(blocks) > 1 else 0.0

    @property
    def p90_per_s(self) -> float:
        rates = self.rates_per_s
        return statistics.quantiles(rates, n=10)[-1] if len(rates) > 1 else rates[0]

    @property
    def slowest_of_p90(self) -> float:
        return min(self.rates_per_s) / self.p90_per_s

    @property
    def slow_block_share(self) -> float:
        return sum(r < SLOW_SHARE * self.p90_per_s for r in self.rates_per_s) / len(self.rates_per_s)


@dataclass(frozen=True)
class HostSpeed:
    """Every core's speed, alone and all at once, and the steal time the guest saw meanwhile."""

    cores: tuple[CoreSpeed, ...]
    seconds_per_condition: float
    steal_s: float

    def median_cv_pct(self, block_s: float) -> float:
        return statistics.median(c.cv_pct(block_s) for c in self.cores)

    @property
    def busy(self) -> bool:
        """Other work ran beside the workers (the guest saw them lose CPU time): the figures
        then measure that work too, not the machine."""
        return min(c.cpu_s_per_wall_s for c in self.cores) < BUSY_CPU_PER_WALL

    @property
    def steady(self) -> bool:
        return not self.busy and self.median_cv_pct(4.0) <= STEADY_CV_4S_PCT

    def to_json(self) -> dict[str, Any]:
        """The machine-readable record (`tuner check-machine --json`, experiments/host_speed.py)."""
        cores = [{"condition": c.condition, "core": c.core, "blocks": len(c.rates_per_s),
                  **{f"cv_{b:g}s_pct": round(c.cv_pct(b), 2) for b in BLOCKS_S},
                  "slowest_of_p90": round(c.slowest_of_p90, 3), "slow_block_share": round(c.slow_block_share, 3),
                  "cpu_s_per_wall_s": round(c.cpu_s_per_wall_s, 4)} for c in self.cores]
        return {"steady": self.steady, "busy": self.busy,
                "steady_rule": f"not busy and median cv_4s_pct <= {STEADY_CV_4S_PCT}",
                "busy_rule": f"a worker's cpu_s_per_wall_s below {BUSY_CPU_PER_WALL}",
                "median_cv_1s_pct": round(self.median_cv_pct(1.0), 2),
                "median_cv_4s_pct": round(self.median_cv_pct(4.0), 2),
                "slow_rule": f"a block below {SLOW_SHARE}x of its core's 90th-percentile speed",
                "seconds_per_condition": self.seconds_per_condition, "steal_s": round(self.steal_s, 3),
                "cores": cores}

    def correlation(self, a: int, b: int) -> float:
        """How alike cores `a` and `b` sped up and slowed down when both were busy (-1..1)."""
        both = {c.core: c.rates_per_s for c in self.cores if c.condition == "all cores"}
        n = min(len(both[a]), len(both[b]))
        return statistics.correlation(both[a][:n], both[b][:n]) if n > 2 else float("nan")


def _steal_ticks() -> int:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])  # cpu user nice system idle iowait irq softirq steal


def _spin(core: int, seconds: float, step_s: float, out: mp.Queue) -> None:
    """Pinned to `core`: count fixed work units per `step_s`, for `seconds`."""
    os.sched_setaffinity(0, {core})
    rates: list[float] = []
    cpu0, wall0, end = time.process_time(), time.perf_counter(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, units = time.perf_counter(), 0
        while time.perf_counter() - start < step_s:
            for _ in range(2000):
                pass
            units += 1
        rates.append(units / (time.perf_counter() - start))
    out.put((core, rates, (time.process_time() - cpu0) / (time.perf_counter() - wall0)))


def _run(condition: str, cores: list[int], seconds: float, step_s: float) -> tuple[list[CoreSpeed], int]:
    ctx = mp.get_context("spawn")  # a clean interpreter: no threads of the caller's to fork
    queue = ctx.Queue()
    steal0 = _steal_ticks()
    procs = [ctx.Process(target=_spin, args=(c, seconds, step_s, queue), daemon=True) for c in cores]
    for p in procs:
        p.start()
    got = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    speeds = [CoreSpeed(condition, c, step_s, tuple(r), u) for c, r, u in sorted(got)]
    return speeds, _steal_ticks() - steal0


def measure(seconds: float = 15.0, step_s: float = 0.25) -> HostSpeed:
    """Time the fixed work on the first core alone (the others idle), then on every core at
    once, `seconds` each."""
    if seconds < MIN_SECONDS or not 0 < step_s <= 1.0:
        raise ValueError(f"seconds={seconds:g}, step_s={step_s:g}: need seconds >= {MIN_SECONDS:g} (two 4 s blocks) "
                         "and 0 < step_s <= 1")
    cores = sorted(os.sched_getaffinity(0))
    alone, stolen_alone = _run("alone", cores[:1], seconds, step_s)
    every, stolen_every = _run("all cores", cores, seconds, step_s)
    return HostSpeed(tuple(alone + every), seconds, (stolen_alone + stolen_every) / os.sysconf("SC_CLK_TCK"))


def describe(h: HostSpeed) -> list[str]:
    """What `tuner check-machine` prints."""
    lines = [f"fixed pure-Python work timed per {h.cores[0].step_s:g} s block, each worker pinned to a core: "
             f"{h.seconds_per_condition:g} s on core {h.cores[0].core} alone, then {h.seconds_per_condition:g} s on every core"]
    for c in h.cores:
        lines.append(f"  {c.condition:>9} core {c.core}: speed CV {c.cv_pct(1.0):.1f}% per 1 s, "
                     f"{c.cv_pct(4.0):.1f}% per 4 s; slowest block {c.slowest_of_p90:.2f}x of its p90; "
                     f"{100 * c.slow_block_share:.0f}% of blocks below {SLOW_SHARE}x; cpu/wall {c.cpu_s_per_wall_s:.3f}")
    use = [c.cpu_s_per_wall_s for c in h.cores]
    lines.append(f"steal time the guest saw: {h.steal_s:.2f} s; the workers' cpu/wall {min(use):.3f}-{max(use):.3f} "
                 "(near 0 s and 1.000 while blocks slow down: CPU accounting cannot see the slowdowns)")
    floor = (f"floor under a measuring window here: speed CV {h.median_cv_pct(1.0):.1f}% over 1 s, "
             f"{h.median_cv_pct(4.0):.1f}% over 4 s (median over cores)")
    if h.busy:
        lines.append(f"BUSY: other work took CPU time from the workers (cpu/wall down to {min(use):.3f}); "
                     f"the figures measure that work too. Run it again with nothing else running. ({floor})")
    elif h.steady:
        lines.append(f"STEADY: {floor}")
    else:
        lines.append(f"UNSTEADY: {floor}; trial figures here will vary at least that much between measurements. "
                     "Lengthen measurement.window_s, re-measure more finalists, widen promote --tolerance, "
                     "or measure on dedicated cores (docs/measurement.md)")
    return lines
