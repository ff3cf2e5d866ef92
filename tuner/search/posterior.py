"""A calibrated posterior for the structural speed model (tuner/search/surrogate.py). Pure numpy.

The structural model says how a CPU (or GPU) call's time follows from precision, batch and
layout; it does not say how far to trust it. Here a Gaussian process on the model's own errors
gives that: the posterior's mean is the structural model (plus what its errors have in common
nearby), and its spread comes from how wrong the model was on configurations it had not seen.

- Errors are leave-one-out: each measured configuration's log call time minus what the
  structural model fitted on all the others predicts. In-sample errors would be too small
  (the model has a few parameters per precision and layout) and the intervals too narrow.
- The GP's inputs are log2 batch, log2 replicas, log2 threads and the precision (one-hot); its
  hyperparameters (length scale, signal and noise variance) maximise the marginal likelihood of
  the errors over a small grid.
- `predict_log(c)` gives the mean and standard deviation of log call time; throughput and p95
  follow from it (throughput = replicas x batch / call time). The variances come from the same n
  errors, so the posterior is a Student t with the smoother's residual degrees of freedom (`dof`),
  not a normal: `quantile_sd` gives its quantiles. `interval(c, 0.90)` is a predictive
  interval of throughput (of a new measurement); `noise=False` gives the true value's instead:
  the GP's noise term less a measurement's own noise (`MEASURED_SD_LOG`), since what is left of
  it is particular to each configuration and so part of its true value. experiments/calibration.py
  checks both on the recorded grids: 90% intervals fitted on a subset should hold 85-95% of the
  held-out configurations' measurements and medians.

Below `MIN_OBSERVATIONS` measurements there is nothing to learn the errors from: the spread is the
structural model's prior one (`SpeedModel.uncertainty`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import product

import numpy as np
from scipy import stats

from tuner.config import TrialConfig
from tuner.search.surrogate import MEASURED_SD_LOG, Observation, SpeedModel

MIN_OBSERVATIONS = 4
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
LENGTH_SCALES = (0.5, 1.0, 2.0, 4.0)
SIGNAL_SHARES = (0.0, 0.25, 0.5, 0.75, 0.95)  # of the errors' variance that is smooth (the rest is noise)


@lru_cache(maxsize=256)
def _t_quantile(probability: float, dof: float) -> float:
    """A Student t's quantile (about 0.1 ms in scipy): the acquisition asks the same one of every
    candidate a fitted posterior scores."""
    return float(stats.t.ppf(probability, df=dof))


def features(c: TrialConfig) -> np.ndarray:
    onehot = [0.7 if c.precision == p else 0.0 for p in PRECISIONS]
    return np.array([math.log2(c.batch_size) / 2.0, math.log2(c.replicas), math.log2(c.threads_per_replica),
                     *onehot])


def _rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / length**2)


class Posterior:
    """The structural model of one platform with a GP on its leave-one-out errors."""

    def __init__(self, observations: list[Observation], platform: str = "cpu") -> None:
        self.model = SpeedModel(observations, platform)
        self.platform = platform
        obs = self.model.obs
        self.fitted = len(obs) >= MIN_OBSERVATIONS
        if not self.fitted:
            return
        y = np.log([o.call_s for o in obs])
        loo = np.array([math.log(SpeedModel(obs[:i] + obs[i + 1:], platform).predict_call_s(o.config))
                        for i, o in enumerate(obs)])
        r = y - loo
        self.X = np.stack([features(o.config) for o in obs])
        total = max(float(np.mean(r**2)), 1e-4)  # errors' variance about zero (the mean is the model)
        best = None
        for length, share in product(LENGTH_SCALES, SIGNAL_SHARES):
            signal, noise = total * share, total * (1 - share) + 1e-6
            K = signal * _rbf(self.X, self.X, length) + noise * np.eye(len(r))
            L = np.linalg.cholesky(K)
            alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
            lml = -0.5 * r @ alpha - np.log(np.diag(L)).sum()
            if best is None or lml > best[0]:
                best = (lml, length, signal, noise, L, alpha)
        assert best is not None
        _, self.length, self.signal, self.noise, self._L, self._alpha = best
        # The residual degrees of freedom of the GP's smoother S = K_signal K^-1: n - tr(S), which
        # is noise x tr(K^-1). The variances were estimated from these n errors, so the
        # posterior of log call time is a Student t with this many degrees of freedom, not a
        # normal: with few measurements, or a smooth part that explains most of the errors, the
        # estimate of the variance is itself unsure and the intervals widen.
        l_inv = np.linalg.inv(self._L)
        self.dof = max(self.noise * float((l_inv**2).sum()), 1.0)

    def predict_log(self, c: TrialConfig, noise: bool = True) -> tuple[float, float]:
        """Mean and standard deviation of log(call seconds) for `c`: of a new measurement of it
        (`noise`), or of its true value (without a measurement's own noise)."""
        mean = math.log(self.model.predict_call_s(c))
        if not self.fitted:
            return mean, math.log1p(self.model.uncertainty(c))
        k = self.signal * _rbf(features(c)[None], self.X, self.length)[0]
        v = np.linalg.solve(self._L, k)
        # The fitted noise is the errors' part that is not smooth across configurations: a new
        # measurement's noise (`MEASURED_SD_LOG`) plus what is particular to each configuration,
        # which belongs to its true value.
        particular = max(self.noise - MEASURED_SD_LOG**2, 0.0)
        var = self.signal - float(v @ v) + (self.noise if noise else particular)
        return mean + float(k @ self._alpha), math.sqrt(max(var, 1e-8))

    def predict(self, c: TrialConfig, noise: bool = True) -> tuple[float, float, float]:
        """(throughput_rps, latency_p95_ms, sd of log throughput) at the posterior mean; the sd
        of a new measurement (`noise`) or of the true value."""
        mean, sd = self.predict_log(c, noise)
        call = math.exp(mean)
        tput, p95, _ = self.model.predict(c)
        scale = call / self.model.predict_call_s(c)  # the GP's correction of the call time
        return tput / scale, p95 * scale, sd

    def quantile_sd(self, probability: float) -> float:
        """How many standard deviations above the mean the posterior's `probability` quantile
        lies: a Student t's with `dof` degrees of freedom once fitted, a normal's before."""
        if not self.fitted:
            return float(stats.norm.ppf(probability))
        return _t_quantile(probability, self.dof)

    def interval(self, c: TrialConfig, level: float = 0.90, noise: bool = True) -> tuple[float, float]:
        """The central `level` interval of throughput (inf/s): of a new measurement of `c`
        (`noise`, the predictive interval), or of its true value."""
        mean, sd = self.predict_log(c, noise)
        per_call = c.replicas * c.batch_size
        z = self.quantile_sd(0.5 + level / 2)
        return per_call / math.exp(mean + z * sd), per_call / math.exp(mean - z * sd)
