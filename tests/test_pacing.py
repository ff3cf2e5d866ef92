"""serving.pacing: Poisson arrivals timed by a thread, not by asyncio's millisecond timers."""

from __future__ import annotations

import asyncio

import pytest

from serving.pacing import pace


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
