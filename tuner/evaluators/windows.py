"""The measurement protocol of measured platforms: warm-up, sized windows until stable.

1. Warm-up for `warmup_s` (at least 2 calls per replica), discarded; it also estimates the
   request rate.
2. Windows of equal length, sized so that the last `min_windows` windows hold
   `target_requests` requests (3,152 by default: the sample a p95 needs to be known within
   +/-1 percentile point at 99% confidence, n = z^2 p (1-p) / m^2 with z = 2.576; it also
   gives p99 within +/-0.5 points), never shorter than `window_s` and never longer than
   `max_measuring_s / min_windows`.
3. A window in which other processes took more than `interference_share_max` of the trial's
   cores (`tuner.evaluators.interference`) is disturbed: it is left out and another is measured,
   at most `disturbed_windows_max` times; after that disturbed windows are kept and the trial's
   `interference` record says `disturbed: true`.
4. Stop when the last `min_windows` windows agree within `stable_pct` on throughput and on
   p95 (Triton perf_analyzer's rule), or after `max_windows` windows or `max_measuring_s` under
   load; the trial then records `stable: false` rather than hiding it.
Figures come from the last `min_windows` windows. Each percentile is reported with its
distribution-free 99% confidence interval (order statistics), so a trial with few requests
(a large batch on a slow model) shows how loose its tail figures are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.pacing import window_arrivals_s
from tuner.evaluators import interference
from tuner.metrics import PerfResult, latency_percentiles_ms
from tuner.spec.measurement import LoadSpec, MeasurementSettings

Z_99 = 2.576


@dataclass(frozen=True)
class WindowSample:
    """What one replica measured in one window."""

    latencies_s: np.ndarray  # one entry per request
    elapsed_s: float
    batch_size: int  # instances per request (1 in server mode)

    @property
    def throughput_rps(self) -> float:
        return len(self.latencies_s) * self.batch_size / self.elapsed_s


def serve_poisson(call: Callable[[int], Any], cap: int, seconds: float, rate_rps: float, max_wait_s: float,
                  seed: int) -> WindowSample:
    """Server load on one replica: Poisson arrivals at `rate_rps` for `seconds` (exactly
    round(rate x seconds) of them, `serving.pacing.window_arrivals_s`), batched up to
    `cap` requests; `call(k)` runs one inference of k instances.

    A batch waits until it is full or its first request has waited `max_wait_s`. Stops early
    when requests wait more than 10 s (the replica is overloaded); the window then reports what
    completed, and its throughput shows the shortfall.
    """
    arrivals = window_arrivals_s(rate_rps, seconds, seed)  # exactly the target rate, as served windows
    lat: list[np.ndarray] = []
    start = time.perf_counter()
    i, n = 0, len(arrivals)
    while i < n:
        now = time.perf_counter() - start
        if arrivals[i] > now:
            time.sleep(arrivals[i] - now)
        deadline = arrivals[i] + max_wait_s
        while True:  # let the batch fill until it is full or the first request waited enough
            now = time.perf_counter() - start
            ready = int(np.searchsorted(arrivals, now, side="right")) - i
            if ready >= cap or now >= deadline or i + ready >= n:
                break
            time.sleep(max(0.0, min(deadline, arrivals[i + ready]) - now))
        take = max(1, min(cap, ready))
        call(take)
        done = time.perf_counter() - start
        lat.append(done - arrivals[i : i + take])
        i += take
        if i < n and done - arrivals[i] > 10.0:
            break
    latencies = np.concatenate(lat) if lat else np.empty(0)
    elapsed = max(time.perf_counter() - start, seconds if i >= n else 0.0)
    return WindowSample(latencies, elapsed, 1)


def percentile_ci_ms(sorted_s: np.ndarray, p: float) -> tuple[float, float]:
    """Distribution-free 99% confidence interval of the p-quantile, in ms."""
    n = len(sorted_s)
    half = Z_99 * math.sqrt(n * p * (1 - p))
    lo = max(0, math.floor(n * p - half) - 1)
    hi = min(n - 1, math.ceil(n * p + half) - 1)
    return float(sorted_s[lo] * 1e3), float(sorted_s[hi] * 1e3)


def _spread_ok(values: list[float], pct: float) -> bool:
    lo, hi = min(values), max(values)
    return lo > 0 and hi / lo <= 1.0 + pct / 100.0


def window_length_s(settings: MeasurementSettings, requests_per_s: float) -> float:
    want = settings.target_requests / (settings.min_windows * max(requests_per_s, 1e-9))
    return min(max(settings.window_s, want), settings.max_measuring_s / settings.min_windows)


def run_protocol(broadcast: Callable[[str, Any], list], settings: MeasurementSettings, load: LoadSpec,
                 probe: bool = True, warmed_rate_rps: float | None = None) -> PerfResult:
    """Drive all replicas window by window and summarise.

    Args:
        broadcast: calls a replica method (by name) on every replica at once and returns their
            results in replica order; args are one tuple for all, or a list with one per replica.
        settings: warm-up, window sizing and stability rule.
        load: offline (closed loop) or server (Poisson arrivals at `target_rps`).
        probe: watch each window for other work on the trial's cores (False: no probe, as for a
            load test of a deployment that is not tuner's to judge).
        warmed_rate_rps: the caller has warmed the replicas up already and measured this request
            rate at the end (the served level's prewarm): no warm-up here; windows are sized from it.
    """
    wall0 = time.perf_counter()
    infos: list[dict[str, Any]] = broadcast("info", ())
    n = len(infos)
    watch = interference.probe_for(infos) if probe else None
    left_out: list[interference.WindowInterference] = []
    warmup_s = settings.warmup_s if warmed_rate_rps is None else 0.0
    if warmed_rate_rps is None:  # discarded: first runs, allocator growth; its rate sizes the windows
        warm = broadcast("run_for", (settings.warmup_s, 2))
        warmed_rate_rps = sum(len(w.latencies_s) / w.elapsed_s for w in warm)
    if load.mode == "server":
        assert load.target_rps is not None  # LoadSpec refuses server mode without a rate
        rate = float(load.target_rps)
    else:
        rate = warmed_rate_rps
    window = window_length_s(settings, rate)
    measure0 = time.perf_counter()
    windows: list[tuple[float, float, list[WindowSample], interference.WindowInterference | None]] = []
    stable = False
    before = watch.begin() if watch else None
    while len(windows) < settings.max_windows:
        if load.mode == "server":
            args = [(window, rate / n, load.batch_wait_timeout_s, 1000 * len(windows) + r) for r in range(n)]
            samples = broadcast("serve_for", args)
        else:
            samples = broadcast("run_for", (window, settings.min_requests_per_window))
        seen, before = watch.end(before) if watch else (None, None)
        if seen is not None and seen.others_share > settings.interference_share_max \
                and len(left_out) < settings.disturbed_windows_max:
            left_out.append(seen)
            continue
        lat = np.concatenate([s.latencies_s for s in samples])
        tput = sum(s.throughput_rps for s in samples)
        windows.append((tput, float(np.percentile(lat, 95)) if lat.size else math.inf, samples, seen))
        recent = windows[-settings.min_windows :]
        if len(windows) >= settings.min_windows and _spread_ok([w[0] for w in recent], settings.stable_pct) \
                and _spread_ok([w[1] for w in recent], settings.stable_pct):
            stable = True
            break
        if len(windows) >= settings.min_windows and time.perf_counter() - measure0 + window > settings.max_measuring_s:
            break
    measuring_s = time.perf_counter() - measure0
    used = windows[-settings.min_windows :]
    tputs = np.array([w[0] for w in used])
    lat = np.sort(np.concatenate([s.latencies_s for w in used for s in w[2]]))
    p50, p95, p99 = latency_percentiles_ms(lat)
    details = {
        "mode": load.mode,
        "target_rps": load.target_rps if load.mode == "server" else None,
        "batch_wait_timeout_s": load.batch_wait_timeout_s if load.mode == "server" else None,
        "windows": len(windows),
        "windows_used": len(used),
        "window_s": round(window, 3),
        "stable": stable,
        "requests": int(lat.size),
        "target_requests": settings.target_requests,
        "latency_p95_ci_ms": percentile_ci_ms(lat, 0.95),
        "latency_p99_ci_ms": percentile_ci_ms(lat, 0.99),
        "window_throughput_rps": [round(float(w[0]), 3) for w in windows],
        "throughput_cv": float(tputs.std() / tputs.mean()) if tputs.mean() > 0 else 0.0,
        "warmup_s": warmup_s,
        "measuring_s": round(measuring_s, 3),
        "protocol_wall_s": round(time.perf_counter() - wall0, 3),
        "replicas": infos,
        "interference": interference.summary([w[3] for w in used], left_out, settings.interference_share_max)
        if watch else {"probed": False, "why": "not asked" if not probe else
                       "no /proc/stat here, or a replica runs on another machine than tuner's driver"},
    }
    return PerfResult(float(tputs.mean()), p50, p95, p99, estimated=False, details=details)
