"""Poisson arrivals for a load client: the arrivals of MLPerf's server scenario, whose latency
counts from each scheduled arrival (`serving.transfers.Transfers.paced` sends a request at each).

No Ray import: numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def window_arrivals_s(rate_rps: float, seconds: float, seed: int) -> np.ndarray:
    """Arrival offsets (s, sorted) for one measuring window: exactly round(rate x seconds)
    requests (at least 1), placed as a Poisson process places a given count, uniformly and
    independently in [0, seconds).

    A Poisson stream's count in a short window varies by about 1/sqrt(count): at 10 req/s a
    9.5 s window offers 8.5-11.5 req/s in two of three windows, and a p95 compared across
    measurements (a trial and its verification) then partly compares the offered loads. With the
    count fixed every window offers the target rate; the gaps between arrivals stay random.
    """
    count = max(1, round(rate_rps * seconds))
    return np.sort(np.random.default_rng(seed).uniform(0.0, seconds, count))


def arrivals(rate_rps: float, seed: int, start: float, until: float = math.inf,
             exact_count: bool = False) -> Iterator[float]:
    """Poisson arrival times at `rate_rps` from `start`, before `until` (seconds on the caller's
    clock, e.g. `time.monotonic()`): an open-ended stream (a load that runs until stopped), or with
    `exact_count` a measuring window's arrivals (`window_arrivals_s`: exactly the target rate over
    [start, until))."""
    if exact_count:
        yield from (start + float(a) for a in window_arrivals_s(rate_rps, until - start, seed))
        return
    rng = np.random.default_rng(seed)
    arrival = start
    while (arrival := arrival + rng.exponential(1.0 / rate_rps)) < until:
        yield arrival
