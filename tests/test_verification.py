"""What a verification prints: beside the verdict, how much its own windows varied and where the
served figure falls in the trial's re-measured range, so that a FAILED verdict on a noisy machine
can be told from a deployment that serves less than its trial."""

from __future__ import annotations

from dataclasses import replace

from tuner.deploy.verification import Figures, Verification, describe

TUNED = Figures(2535.0, 11.7, 19.58, 23.3)


def verification(served_rps: float, tuned_range: tuple[float, float] | None,
                 p95_range: tuple[float, float] | None = None) -> Verification:
    served = Figures(served_rps, 12.0, 21.0, 25.0, 10_000)
    ratio = served_rps / TUNED.throughput_rps
    return Verification(ratio >= 0.9, "offline", 10.0, 0.1, served, TUNED, ratio, 21.0 / 19.58, 0,
                        concurrency=32, windows=4, stable=False, measuring_s=8.1,
                        window_throughput_rps=(1657.2, 2342.9, 1900.0, 1811.0), tuned_range_rps=tuned_range,
                        tuned_samples=0 if tuned_range is None else 3, tuned_range_p95_ms=p95_range)


def test_the_windows_range_is_printed() -> None:
    text = describe(verification(1836.5, None))
    assert "4 windows in 8.1 s, not stable (1,657-2,343 inf/s per window)" in text
    assert "re-measurements" not in text  # a trial measured once has no range to compare with


def test_a_served_figure_is_placed_in_the_trials_re_measured_range() -> None:
    below = describe(verification(1836.5, (1942.0, 3054.0)))
    assert "FAILED" in below
    assert ("the trial's own 3 re-measurements ranged 1,942.0-3,054.0 inf/s; the served figure is 105.50 inf/s "
            "(5.4%) below that range") in below
    within = describe(verification(2100.0, (1942.0, 3054.0)))
    assert "FAILED" in within and "the served figure is within that range" in within
    above = describe(verification(3100.0, (1942.0, 3054.0)))
    assert "PASSED" in above and "the served figure is 46.00 inf/s (1.5%) above that range" in above
    # Server mode: the throughput is the offered rate, and a rounding error off it is not "above".
    offered = describe(verification(10.000000001, (9.99999, 10.0)))
    assert "the served figure is within that range" in offered, offered


def test_the_served_p95_is_placed_in_the_trials_re_measured_p95_range() -> None:
    """In server mode the throughput is the offered rate; the p95 is what decides."""
    text = describe(verification(505.5, (493.5, 502.6), (9.58, 10.2)))
    assert ("the served figure is 2.90 inf/s (0.6%) above that range; their p95 9.58-10.20 ms, the served p95 "
            "10.80 ms (105.9%) above it") in text


def test_the_served_p95s_confidence_interval_says_whether_the_sample_can_tell_them_apart() -> None:
    """~95 requests (10 s at 10 req/s): the p95 rests on the 5 slowest; the interval says so."""
    few = Figures(10.9, 60.0, 163.67, 190.0, 95)
    wide = Verification(False, "server", 10.0, 0.1, few, Figures(9.7, 46.1, 120.37, 171.5), 1.13, 1.36, 0,
                        served_p95_ci_ms=(110.2, 240.5))
    text = describe(wide)
    assert "the served p95 from 95 requests lies in 110.20-240.50 ms (99% confidence); the trial's p95 is " \
           "inside that interval: too few requests to tell the two p95s apart" in text
    narrow = Verification(False, "server", 10.0, 0.1, replace(few, requests_ok=5000),
                          Figures(9.7, 46.1, 120.37, 171.5), 1.13, 1.36, 0, served_p95_ci_ms=(158.0, 170.0))
    text = describe(narrow)
    assert "the trial's p95 is outside that interval" in text and "too few requests" not in text
