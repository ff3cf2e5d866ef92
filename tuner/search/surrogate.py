"""A structural model of CPU serving speed, fitted on the trials measured so far (numpy, scipy).

What is known about CNN serving on a CPU, written as a model of the time per model call:

    time(precision, batch, layout) = (a_p + b_p * batch) * f_layout

- a_p is the fixed cost of one call and b_p the cost per instance for each precision: a call
  takes longer the larger its batch, and a per-call overhead makes small batches inefficient;
- f_layout (replicas x threads) scales every precision and batch alike: more threads shorten
  a call, more replicas slow each one down a little (shared caches and memory).
Throughput then follows as replicas * batch / time, and the p95 latency as time times a
tail factor per layout. The model is fitted jointly in log space by least squares, with weak
priors for what the data leaves open: with one measured batch size a precision borrows the
overhead share (a/b) of the others.
Each prediction carries an uncertainty that grows with how little was measured near it.

The same form is fitted, separately, on a study's GPU trials (`SpeedModel(obs, platform="gpu")`):
a GPU call also has a fixed launch and copy cost and a per-instance cost, and replicas sharing
a GPU slow each other's calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from tuner.config import TrialConfig

#: Weights of the priors beside the data (per log unit): each precision's log(a/b) towards the
#: shared one, the shared one towards 0, and a measured layout's factor towards its prior. A
#: data residual counts in units of a measurement's typical noise, `MEASURED_SD_LOG`: 5%, from
#: the repeated grids here (median throughput CV across passes 2.5% digits-cnn, 4.5% resnet18;
#: engine repeatability, quiet, 4.8%; docs/search.md, docs/measurement.md).
SHARE_PRIOR_WEIGHT, MU_PRIOR_WEIGHT, LAYOUT_PRIOR_WEIGHT = 0.3, 0.1, 0.05
MEASURED_SD_LOG = 0.05


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


def _prior_layout_factor(lay: tuple[int, int]) -> float:
    """An unseen layout's factor on the call time, against 1x1: threads help sublinearly,
    replicas contend a little (priors)."""
    r, t = lay
    return (1.0 / t ** 0.7) * (1.1 if r > 1 else 1.0)


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
        """Joint least squares in log space over every observation of the platform.

        Parameters: log a_p and log b_p per precision, log f per measured layout (1x1 is the
        unit layout, measured or not), and a shared log(a/b). Beside the data, weak priors keep
        what the data does not determine near the model's form: each precision's log(a/b) near
        the shared one (so a precision measured at one batch size borrows the others' overhead
        share), the shared one near 0 (a/b = 1), and each layout's factor near the prior of an
        unseen layout. (An alternating fit of lines and layout factors, used before, could stop
        far from the optimum when layouts and batch sizes were measured apart.)
        """
        precisions = sorted({o.config.precision for o in self.obs})
        layouts = sorted({_layout(o.config) for o in self.obs} - {(1, 1)})
        n_p, n_l = len(precisions), len(layouts)
        pi = np.array([precisions.index(o.config.precision) for o in self.obs])
        li = np.array([layouts.index(_layout(o.config)) if _layout(o.config) != (1, 1) else -1 for o in self.obs])
        batch = np.array([o.config.batch_size for o in self.obs], float)
        y = np.log([o.call_s for o in self.obs])
        prior_f = np.log([_prior_layout_factor(lay) for lay in layouts])

        def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
            return x[:n_p], x[n_p:2 * n_p], x[2 * n_p:2 * n_p + n_l], float(x[-1])

        def residuals(x: np.ndarray) -> np.ndarray:
            la, lb, lf, mu = unpack(x)
            f = np.where(li >= 0, np.concatenate([lf, [0.0]])[li], 0.0)
            pred = np.logaddexp(la[pi], lb[pi] + np.log(batch)) + f
            return np.concatenate([(y - pred) / MEASURED_SD_LOG, SHARE_PRIOR_WEIGHT * (la - lb - mu), [MU_PRIOR_WEIGHT * mu],
                                   LAYOUT_PRIOR_WEIGHT * (lf - prior_f)])

        start_b = np.array([np.median([o.call_s / (o.config.batch_size + 1) for o in self.obs
                                       if o.config.precision == p]) for p in precisions])
        x0 = np.concatenate([np.log(start_b), np.log(start_b), prior_f, [0.0]])
        x = least_squares(residuals, x0, method="trf").x
        la, lb, lf, _ = unpack(x)
        self.lines = {p: (float(np.exp(la[i])), float(np.exp(lb[i]))) for i, p in enumerate(precisions)}
        self.layout_f = {lay: float(np.exp(lf[i])) for i, lay in enumerate(layouts)}
        if any(_layout(o.config) == (1, 1) for o in self.obs):
            self.layout_f[(1, 1)] = 1.0
        for lay in {_layout(o.config) for o in self.obs}:
            tails = [o.latency_p95_ms / 1e3 / self.predict_call_s(o.config) for o in self.obs if _layout(o.config) == lay]
            self.tail[lay] = float(np.exp(np.mean(np.log(tails))))

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
        return _prior_layout_factor(lay)

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
