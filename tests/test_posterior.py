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
