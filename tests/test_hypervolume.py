"""Hypervolume against hand-computed volumes and a Monte Carlo estimate."""

import numpy as np
import pytest

from tuner.front.hypervolume import hypervolume, normalised_minimised


def test_known_volumes() -> None:
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), np.ones(3)) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 0.5]]), np.ones(2)) == pytest.approx(0.25)
    two = np.array([[0.0, 0.5], [0.5, 0.0]])
    assert hypervolume(two, np.ones(2)) == pytest.approx(0.75)
    assert hypervolume(np.array([[2.0, 0, 0]]), np.ones(3)) == 0.0  # beyond the reference point


def test_three_d_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    pts = rng.random((25, 3))
    exact = hypervolume(pts, np.ones(3))
    samples = rng.random((200_000, 3))
    dominated = np.zeros(len(samples), bool)
    for p in pts:
        dominated |= np.all(samples >= p, axis=1)
    assert exact == pytest.approx(dominated.mean(), abs=0.01)


def test_dominated_points_add_nothing() -> None:
    front = np.array([[0.1, 0.5, 0.5], [0.5, 0.1, 0.5]])
    worse = np.vstack([front, [[0.6, 0.6, 0.6]]])
    assert hypervolume(worse, np.ones(3)) == pytest.approx(hypervolume(front, np.ones(3)))


def test_normalisation_flips_maximised_objectives() -> None:
    vals = np.array([[100.0, 1.0, 0.5], [300.0, 3.0, 0.1]])
    lo, hi = vals.min(0), vals.max(0)
    n = normalised_minimised(vals, ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"], lo, hi)
    assert n.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
