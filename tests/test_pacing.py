"""serving.pacing: Poisson arrivals timed by a thread, not by asyncio's millisecond timers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.pacing import pace, window_arrivals_s


def test_paced_arrivals_come_at_their_scheduled_times_at_the_target_rate() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        late: list[float] = []
        start = loop.time()
        await pace(loop, 400.0, 1, start, start + 2.0, lambda arrival: late.append(loop.time() - arrival))
        return late

    late = asyncio.run(main())
    assert 800 * 0.8 <= len(late) <= 800 * 1.2  # a Poisson count of mean 800
    late.sort()
    # asyncio.sleep would be ~0.5-1 ms late at the median (epoll's whole-millisecond timeout).
    assert late[0] >= 0 and late[len(late) // 2] < 0.0005, late[len(late) // 2]


def test_pacing_stops_when_told_and_the_same_seed_gives_the_same_arrivals() -> None:
    async def arrivals(stop_after_s: float | None) -> list[float]:
        loop = asyncio.get_running_loop()
        start, seen = loop.time(), []
        keep_going = (lambda: True) if stop_after_s is None else (lambda: loop.time() < start + stop_after_s)
        await pace(loop, 200.0, 5, start, start + 1.0, lambda a: seen.append(a - start), keep_going)
        return seen

    full, again, stopped = asyncio.run(arrivals(None)), asyncio.run(arrivals(None)), asyncio.run(arrivals(0.3))
    assert full == pytest.approx(again) and len(full) > 100
    assert stopped == pytest.approx(full[:len(stopped)]) and max(stopped) < 0.31 < max(full)


def test_a_measuring_window_offers_exactly_the_target_rate_with_poisson_like_gaps() -> None:
    counts = {len(window_arrivals_s(10.0, 9.5, seed)) for seed in range(50)}
    assert counts == {95}  # an open Poisson stream: 95 +- 10 (one sd) from window to window
    a = window_arrivals_s(500.0, 4.0, 7)
    assert len(a) == 2000 and np.all(np.diff(a) >= 0) and a[0] >= 0 and a[-1] < 4.0
    gaps = np.diff(a)
    assert 0.9 < gaps.std() / gaps.mean() < 1.1  # exponential-like gaps (CV 1), not a metronome (CV 0)
    assert not np.allclose(window_arrivals_s(10.0, 9.5, 1), window_arrivals_s(10.0, 9.5, 2))
    assert np.allclose(window_arrivals_s(10.0, 9.5, 1), window_arrivals_s(10.0, 9.5, 1))
    assert len(window_arrivals_s(0.01, 1.0, 0)) == 1  # at least one request per window


def test_paced_window_launches_exactly_the_window_arrivals() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        start, seen = loop.time(), []
        await pace(loop, 300.0, 3, start, start + 0.5, lambda a: seen.append(a - start), exact_count=True)
        return seen

    assert asyncio.run(main()) == pytest.approx(list(window_arrivals_s(300.0, 0.5, 3)))
