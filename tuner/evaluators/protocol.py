"""The measurement protocol shared by measured platforms: warm-up, then windows until stable.

Stability rule (Triton perf_analyzer's): over the last `min_windows` windows, max/min of the
throughput and of the p95 latency are both within `stable_pct`. A configuration that never
settles is measured for `max_windows` windows and recorded as unstable, not hidden.
The figures reported come from those last windows only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tuner.metrics import PerfResult, latency_percentiles_ms
from tuner.search_space import MeasurementSettings


@dataclass(frozen=True)
class WindowSample:
    """What one replica measured in one window."""

    latencies_s: np.ndarray  # one entry per call (request) of `batch_size` instances
    elapsed_s: float
    batch_size: int

    @property
    def throughput_rps(self) -> float:
        return len(self.latencies_s) * self.batch_size / self.elapsed_s


def _spread_ok(values: list[float], pct: float) -> bool:
    lo, hi = min(values), max(values)
    return lo > 0 and hi / lo <= 1.0 + pct / 100.0


def run_protocol(broadcast: Callable[[str, tuple], list], settings: MeasurementSettings) -> PerfResult:
    """Drive all replicas window by window and summarise.

    Args:
        broadcast: calls a replica method (by name, with args) on every replica at once and
            returns their results in replica order (Ray actors or local threads).
        settings: warm-up, window length and stability rule.
    """
    wall0 = time.perf_counter()
    infos: list[dict[str, Any]] = broadcast("info", ())
    broadcast("run_for", (settings.warmup_s, 2))  # discarded: session warm-up, allocator growth
    measure0 = time.perf_counter()
    windows: list[tuple[float, float, list[WindowSample]]] = []  # (throughput, p95 s, samples)
    stable = False
    while len(windows) < settings.max_windows:
        samples: list[WindowSample] = broadcast("run_for", (settings.window_s, settings.min_requests_per_window))
        tput = sum(s.throughput_rps for s in samples)
        p95 = float(np.percentile(np.concatenate([s.latencies_s for s in samples]), 95))
        windows.append((tput, p95, samples))
        recent = windows[-settings.min_windows :]
        if len(windows) >= settings.min_windows:
            if _spread_ok([w[0] for w in recent], settings.stable_pct) and _spread_ok(
                [w[1] for w in recent], settings.stable_pct
            ):
                stable = True
                break
    measuring_s = time.perf_counter() - measure0
    used = windows[-settings.min_windows :]
    tputs = np.array([w[0] for w in used])
    lat = np.concatenate([s.latencies_s for w in used for s in w[2]])
    p50, p95, p99 = latency_percentiles_ms(lat)
    details = {
        "mode": "offline",
        "windows": len(windows),
        "windows_used": len(used),
        "stable": stable,
        "requests": int(lat.size),
        "window_throughput_rps": [round(float(w[0]), 3) for w in windows],
        "throughput_cv": float(tputs.std() / tputs.mean()) if tputs.mean() > 0 else 0.0,
        "warmup_s": settings.warmup_s,
        "window_s": settings.window_s,
        "measuring_s": round(measuring_s, 3),
        "protocol_wall_s": round(time.perf_counter() - wall0, 3),
        "replicas": infos,
    }
    return PerfResult(float(tputs.mean()), p50, p95, p99, estimated=False, details=details)
