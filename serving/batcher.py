"""Dynamic batching inside one replica: concurrent requests joined into one model call.

A request's tensors go in with `Batcher.submit`; one task on the replica's event loop takes the
oldest waiting request, adds the next ones while their instances fit `max_instances` (a request
larger than that goes alone: the caller chunks it), waits at most `wait_s` from the first for
more, runs the batch and hands each request its own result. One batch runs at a time; the next
one fills meanwhile. A batch that raises fails every request in it, and nothing else.

Why not Ray Serve's ``@serve.batch``: on this path it cost the replica about 45 us of a digits-cnn
request's 394 (it reads the method's signature on every call, and recounts the queued instances
at each arrival), and it records four histogram observations per batch (batch size, wait, execution
time, utilisation). Ray 2.60's metrics agent replays every histogram observation one by one
(`record_histogram_aggregated_batch`), so each costs the machine CPU again, in bursts: at 500 req/s
on one digits-cnn replica the agent took 0.7-1.0 of a core for about a second every 10 s
(docs/measurement.md). This batcher records nothing; the replica counts its batches with counters
(`serving.metrics`).

No Ray import: asyncio only, so it is tested on its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Joins concurrent `submit` calls into batches for `run`.

    Args:
        run: runs one batch; returns one result per item, in order.
        size_of: how many instances an item carries.
        max_instances: the most instances in a batch (a larger item goes alone).
        wait_s: the longest wait, from a batch's first item, for more items to fill it.
    """

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result]]], size_of: Callable[[Item], int],
                 max_instances: int = 1, wait_s: float = 0.0) -> None:
        self._run, self._size_of = run, size_of
        self.max_instances, self.wait_s = max_instances, wait_s
        self._waiting: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def configure(self, max_instances: int, wait_s: float) -> None:
        """New limits; the batch being formed uses them from its next step."""
        self.max_instances, self.wait_s = max_instances, wait_s

    async def submit(self, item: Item) -> Result:
        """Wait for `item`'s turn in a batch and return its result (or raise its batch's error)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._batches(), name="tuner-batcher")
        assert self._arrived is not None
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        self._arrived.set()
        return await future

    async def _batches(self) -> None:
        assert self._arrived is not None
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._fill()
            batch = [(item, future) for item, future in batch if not future.done()]  # cancelled: time-outs
            if not batch:
                continue
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # the batch's requests get the error; the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def _fill(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The oldest waiting item and those after it that fit, waiting up to `wait_s` for more."""
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        first = self._waiting.popleft()
        batch, total = [first], self._size_of(first[0])
        deadline = loop.time() + self.wait_s
        while total < self.max_instances:
            if self._waiting:
                size = self._size_of(self._waiting[0][0])
                if total + size > self.max_instances:
                    break
                batch.append(self._waiting.popleft())
                total += size
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        return batch
