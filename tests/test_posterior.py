"""The posterior of the default sampler's speed model (tuner/search/posterior.py): its spread
comes from how wrong the structural model was on configurations it had not seen, so it is
narrow where the landscape follows the model's form and wide where measurements scatter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_surrogate import cfg, truth
from tuner.search.posterior import Posterior
from tuner.search.surrogate import MEASURED_SD_LOG, Observation

SEEN = [cfg("fp32", 1), cfg("fp32", 16), cfg("fp32", 64), cfg("int8", 1), cfg("int8", 32), cfg("int8", 256),
        cfg("fp32", 16, 2, 1), cfg("int8", 4, 1, 2), cfg("fp32", 4, 1, 2), cfg("int8", 64, 2, 1)]
HELD_OUT = [cfg("fp32", 256, 2, 1), cfg("int8", 16, 1, 2), cfg("fp32", 8), cfg("int8", 128, 2, 1), cfg("fp32", 32, 1, 2),
            cfg("int8", 8)]


def noisy(c, rng: np.random.Generator, sd: float) -> Observation:
    t = truth(c)
    f = math.exp(rng.normal(0, sd))
    return Observation(c, t.throughput_rps * f, t.latency_p95_ms / f)


def test_a_landscape_of_the_models_form_gets_narrow_intervals_that_hold() -> None:
    post = Posterior([truth(c) for c in SEEN])
    assert post.fitted
    for c in HELD_OUT:
        lo, hi = post.interval(c, 0.90)
        assert lo <= truth(c).throughput_rps <= hi
        assert hi / lo < 1.3, (c, lo, hi)  # the model is right: little to be unsure of


def test_scattered_measurements_widen_the_intervals_and_most_hold() -> None:
    rng = np.random.default_rng(0)
    held, widths = 0, []
    for _ in range(30):
        post = Posterior([noisy(c, rng, 0.25) for c in SEEN])
        for c in HELD_OUT:
            told = noisy(c, rng, 0.25).throughput_rps  # a held-out measurement, as noisy as the rest
            lo, hi = post.interval(c, 0.90)
            held += lo <= told <= hi
            widths.append(hi / lo)
    share = held / (30 * len(HELD_OUT))
    assert 0.75 <= share <= 0.99, share
    assert float(np.median(widths)) > 1.8  # 25% noise cannot give a tight interval


def test_too_few_measurements_fall_back_to_the_prior_spread() -> None:
    post = Posterior([truth(cfg("fp32", 16))])
    assert not post.fitted
    mean, sd = post.predict_log(cfg("int8", 256))
    assert sd == math.log1p(post.model.uncertainty(cfg("int8", 256)))
    tput, _, _ = post.predict(cfg("fp32", 16))
    assert math.isclose(tput, truth(cfg("fp32", 16)).throughput_rps, rel_tol=1e-6)


def test_the_true_value_is_surer_than_a_new_measurement_of_it() -> None:
    # The acquisition is optimistic about a configuration's true value, not about the luck of its
    # next measurement: measurement noise buys nothing when a search is scored by the truth.
    rng = np.random.default_rng(1)
    post = Posterior([noisy(c, rng, 0.1) for c in SEEN])
    assert post.noise > 0
    for c in HELD_OUT:
        assert post.predict(c, noise=False)[2] < post.predict(c, noise=True)[2]


def test_scatter_beyond_a_measurements_noise_stays_in_the_true_values_spread() -> None:
    # Errors of 25% are far more than a measurement's own noise (5%): what is left is particular
    # to each configuration (its true value), so the true value's spread keeps it.
    rng = np.random.default_rng(2)
    post = Posterior([noisy(c, rng, 0.25) for c in SEEN])
    assert post.noise > 4 * MEASURED_SD_LOG**2
    for c in HELD_OUT:
        _, sd_new = post.predict_log(c)
        _, sd_true = post.predict_log(c, noise=False)
        assert sd_true**2 == pytest.approx(sd_new**2 - MEASURED_SD_LOG**2, rel=1e-6)
        lo, hi = post.interval(c, 0.90, noise=False)
        assert hi / lo > 1.5  # still wide: a fit that called it all noise would be sure of a wrong mean


def test_a_spread_estimated_from_few_errors_gives_a_students_t_wider_than_a_normal() -> None:
    # The variances come from the n errors themselves: with few of them the spread is itself
    # unsure, so the posterior is a t with at most n degrees of freedom (the GP smoother's
    # residual ones), and its quantiles lie further out than a normal's; more measurements
    # bring it towards the normal.
    rng = np.random.default_rng(3)
    few = Posterior([noisy(c, rng, 0.15) for c in SEEN[:5]])
    layouts = [(1, 1), (2, 1), (1, 2)]
    many = Posterior([noisy(cfg(p, b, r, t), rng, 0.15) for p in ("fp32", "int8") for b in (1, 4, 16, 64, 256)
                      for r, t in layouts])
    assert few.fitted and many.fitted
    assert 1.0 <= few.dof <= 5 + 1e-9 and many.dof <= 30 + 1e-9
    normal_95 = 1.6449
    assert few.quantile_sd(0.95) > many.quantile_sd(0.95) > normal_95
    # The interval is the t's: mean -/+ its quantile times the sd, in log call time.
    c = HELD_OUT[0]
    mean, sd = few.predict_log(c)
    lo, hi = few.interval(c, 0.90)
    assert math.log(hi / lo) == pytest.approx(2 * few.quantile_sd(0.95) * sd, rel=1e-9)
    # Before a fit (too few measurements) the prior spread's quantiles are a normal's.
    assert Posterior([truth(cfg("fp32", 16))]).quantile_sd(0.95) == pytest.approx(normal_95, abs=1e-4)
