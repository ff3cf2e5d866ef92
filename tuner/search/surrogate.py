"""A structural model of CPU serving speed, fitted on the trials measured so far. Pure numpy.

What is known about CNN serving on a CPU, written as a model of the time per model call:

    time(precision, batch, layout) = (a_p + b_p * batch) * f_layout

- a_p is the fixed cost of one call and b_p the cost per instance for each precision: a call
  takes longer the larger its batch, and a per-call overhead makes small batches inefficient;
- f_layout (replicas x threads) scales every precision and batch alike: more threads shorten
  a call, more replicas slow each one down a little (shared caches and memory).
Throughput then follows as replicas * batch / time, and the p95 latency as time times a
tail factor per layout. The model is fitted in log space by alternating least squares; with
one measured batch size for a precision it borrows the overhead share (a/b) of the others.
Each prediction carries an uncertainty that grows with how little was measured near it.

The same form is fitted, separately, on a study's GPU trials (`SpeedModel(obs, platform="gpu")`):
a GPU call also has a fixed launch and copy cost and a per-instance cost, and replicas sharing
a GPU slow each other's calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.config import TrialConfig


@dataclass(frozen=True)
class Observation:
    config: TrialConfig
    throughput_rps: float
    latency_p95_ms: float

    @property
    def call_s(self) -> float:
        """Mean time of one model call, from the throughput."""
        return self.config.replicas * self.config.batch_size / self.throughput_rps


def _layout(c: TrialConfig) -> tuple[int, int]:
    return (c.replicas, c.threads_per_replica)


def _fit_line(batches: np.ndarray, times: np.ndarray, share: float | None) -> tuple[float, float]:
    """Fit time = a + b * batch (a, b >= 0); with one batch size, a = share of the time at batch 1."""
    if len(set(batches.tolist())) >= 2:
        A = np.stack([np.ones_like(batches), batches], 1)
        (a, b), *_ = np.linalg.lstsq(A, times, rcond=None)
        if a < 0 or b <= 0:  # keep the physical form; fall back to a pure slope / pure constant
            b = max(float(np.mean(times / batches)), 1e-12)
            a = 0.0
        return float(max(a, 0.0)), float(b)
    bt, t = float(batches[0]), float(np.mean(times))
    s = 0.5 if share is None else share  # a / (a + b) at batch 1
    b = t / (s / (1 - s) + bt) if s < 1 else t / bt
    return float(b * s / (1 - s)) if s < 1 else 0.0, float(b)


class SpeedModel:
    """Fit on observations of one platform; predict call time, throughput and p95 for its configs."""

    def __init__(self, observations: list[Observation], platform: str = "cpu") -> None:
        self.platform = platform
        self.obs = [o for o in observations if o.config.platform == platform and o.throughput_rps > 0]
        self.layout_f: dict[tuple[int, int], float] = {}
        self.tail: dict[tuple[int, int], float] = {}
        self.lines: dict[str, tuple[float, float]] = {}
        if self.obs:
            self._fit()

    def _fit(self) -> None:
        layouts = {_layout(o.config) for o in self.obs}
        self.layout_f = {lay: 1.0 for lay in layouts}
        for _ in range(8):
            share = self._pooled_share()
            by_p: dict[str, list[Observation]] = {}
            for o in self.obs:
                by_p.setdefault(o.config.precision, []).append(o)
            for p, obs in by_p.items():
                b = np.array([o.config.batch_size for o in obs], float)
                t = np.array([o.call_s / self.layout_f[_layout(o.config)] for o in obs])
                self.lines[p] = _fit_line(b, t, share)
            for lay in layouts:
                ratios = [o.call_s / self._base(o.config) for o in self.obs if _layout(o.config) == lay]
                self.layout_f[lay] = float(np.exp(np.mean(np.log(ratios))))
            ref = self.layout_f.get((1, 1))
            if ref:  # identifiability: 1x1 is the unit layout
                self.layout_f = {lay: f / ref for lay, f in self.layout_f.items()}
        for lay in layouts:
            tails = [o.latency_p95_ms / 1e3 / self.predict_call_s(o.config) for o in self.obs if _layout(o.config) == lay]
            self.tail[lay] = float(np.exp(np.mean(np.log(tails))))

    def _pooled_share(self) -> float | None:
        shares = [a / (a + b) for a, b in self.lines.values() if a + b > 0]
        return float(np.median(shares)) if shares else None

    def _base(self, c: TrialConfig) -> float:
        a, b = self.lines.get(c.precision) or self._borrowed_line()
        return a + b * c.batch_size

    def _borrowed_line(self) -> tuple[float, float]:
        lines = list(self.lines.values())
        return (float(np.median([lay[0] for lay in lines])), float(np.median([lay[1] for lay in lines])))

    def _layout_factor(self, c: TrialConfig) -> float:
        lay = _layout(c)
        if lay in self.layout_f:
            return self.layout_f[lay]
        r, t = lay
        # unseen layout: threads help sublinearly, replicas contend a little (priors)
        return (1.0 / t ** 0.7) * (1.1 if r > 1 else 1.0)

    def predict_call_s(self, c: TrialConfig) -> float:
        return self._base(c) * self._layout_factor(c)

    def predict(self, c: TrialConfig) -> tuple[float, float, float]:
        """(throughput_rps, latency_p95_ms, uncertainty as a relative error)."""
        call = self.predict_call_s(c)
        tail = self.tail.get(_layout(c), float(np.median(list(self.tail.values()))) if self.tail else 1.3)
        return c.replicas * c.batch_size / call, call * tail * 1e3, self.uncertainty(c)

    def uncertainty(self, c: TrialConfig) -> float:
        """0.05 next to a measured batch of the same group, up to 0.6 with nothing nearby."""
        same_p = [o for o in self.obs if o.config.precision == c.precision]
        same_l = [o for o in self.obs if _layout(o.config) == _layout(c)]
        u = 0.05
        u += 0.0 if same_l else 0.25
        if not same_p:
            u += 0.3
        else:
            dist = min(abs(np.log2(c.batch_size) - np.log2(o.config.batch_size)) for o in same_p)
            batches = {o.config.batch_size for o in same_p}
            inside = min(batches) <= c.batch_size <= max(batches) and len(batches) > 1
            u += (0.02 if inside else 0.05) * dist
        return float(min(u, 0.6))
