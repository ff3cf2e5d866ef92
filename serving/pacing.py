"""Poisson arrivals for a load client, on time: the arrivals of MLPerf's server scenario, whose
latency counts from each scheduled arrival (`serving.loadgen`, `serving.client`).

No Ray import: asyncio, a thread and numpy.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np

Result = TypeVar("Result")

_PACER_STEP_S = 0.1  # longest blocking sleep of the pacer, so that a stop is noticed


def pace(loop: asyncio.AbstractEventLoop, rate_rps: float, seed: int, start: float, until: float,
         launch: Callable[[float], None], keep_going: Callable[[], bool] = lambda: True) -> asyncio.Future:
    """Call `launch(arrival)` on `loop` at Poisson arrival times (`rate_rps`, from `start`, before
    `until`, both on `loop.time()`'s clock) while `keep_going()`; the returned future (of `loop`) is
    done after the last launch.

    The arrivals are timed by a thread that sleeps with the OS's clock and hands each one to the
    loop (`call_soon_threadsafe` wakes its selector at once). An ``asyncio.sleep`` wakes late: the
    loop's epoll wait rounds its timeout up to whole milliseconds, so a Poisson stream timed by it
    arrives 0.67 ms late at the median and 1.1 ms at p95 (measured here at 500 req/s, idle machine),
    and latency counted from the scheduled arrival would include the client's own timer. With
    the thread: 0.14 ms and 0.24 ms.
    """
    finished = loop.create_future()

    def finish() -> None:
        if not finished.done():
            finished.set_result(None)

    def run() -> None:
        rng = np.random.default_rng(seed)
        arrival = start
        try:
            while True:
                arrival += rng.exponential(1.0 / rate_rps)
                if arrival >= until:
                    return
                while (delay := arrival - loop.time()) > 0:
                    if not keep_going():
                        return
                    time.sleep(min(delay, _PACER_STEP_S))
                if not keep_going():
                    return
                loop.call_soon_threadsafe(launch, arrival)
        finally:
            loop.call_soon_threadsafe(finish)  # after every launch: the loop runs them in order

    threading.Thread(target=run, name="tuner-pacer", daemon=True).start()
    return finished


async def paced_requests(loop: asyncio.AbstractEventLoop, rate_rps: float, seed: int, start: float, until: float,
                         request: Callable[[float], Awaitable[Result]],
                         keep_going: Callable[[], bool] = lambda: True) -> list[Result]:
    """Start `request(arrival)` as a task at each of `pace`'s arrivals and return their results
    once all have finished, in the order they finished."""
    results: list[Result] = []
    tasks: set[asyncio.Task] = set()

    def launch(arrival: float) -> None:
        task = asyncio.ensure_future(request(arrival))
        task.add_done_callback(lambda t: results.append(t.result()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await pace(loop, rate_rps, seed, start, until, launch, keep_going)
    if tasks:
        await asyncio.gather(*tasks)
    return results
