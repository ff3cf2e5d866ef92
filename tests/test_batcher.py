"""serving.batcher: concurrent requests joined into batches counted in instances, on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from serving.batcher import Batcher


def _runner(log: list[list[int]], delay_s: float = 0.0, fail_on: int | None = None):
    async def run(items: list[int]) -> list[int]:
        log.append(list(items))
        if delay_s:
            await asyncio.sleep(delay_s)
        if fail_on is not None and fail_on in items:
            raise RuntimeError(f"bad item {fail_on}")
        return [10 * i for i in items]
    return run


def test_concurrent_requests_share_one_batch_up_to_max_instances_and_get_their_own_results() -> None:
    log: list[list[int]] = []

    async def main() -> list[int]:
        batcher = Batcher(_runner(log), lambda item: 1, max_instances=4, wait_s=0.05)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert asyncio.run(main()) == [10 * i for i in range(10)]
    assert log == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_instances_not_requests_fill_a_batch_and_a_large_request_goes_alone() -> None:
    log: list[list[int]] = []
    sizes = {1: 3, 2: 2, 3: 9, 4: 1}

    async def main() -> None:
        batcher = Batcher(_runner(log), sizes.__getitem__, max_instances=4, wait_s=0.05)
        await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3, 4)))

    asyncio.run(main())
    assert log == [[1], [2], [3], [4]]  # 3+2 > 4; then 2+9 > 4; 9 alone (the caller chunks it); then 1


def test_a_lone_request_waits_at_most_wait_s_and_with_no_wait_runs_at_once() -> None:
    async def alone(wait_s: float) -> float:
        batcher = Batcher(_runner([]), lambda item: 1, max_instances=8, wait_s=wait_s)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await batcher.submit(1)
        return loop.time() - t0

    assert 0.08 <= asyncio.run(alone(0.1)) < 0.5
    assert asyncio.run(alone(0.0)) < 0.05


def test_requests_arriving_while_a_batch_runs_form_the_next_one() -> None:
    log: list[list[int]] = []

    async def main() -> None:
        batcher = Batcher(_runner(log, delay_s=0.05), lambda item: 1, max_instances=8, wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)  # batch [0] is running
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert log == [[0], [1, 2, 3]]


def test_a_failing_batch_fails_its_own_requests_only_and_the_batcher_goes_on() -> None:
    log: list[list[int]] = []

    async def main() -> tuple[list, int]:
        batcher = Batcher(_runner(log, fail_on=1), lambda item: 1, max_instances=2, wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
        return results, await batcher.submit(7)

    results, later = asyncio.run(main())
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError] and "bad item 1" in str(results[0])
    assert results[2:] == [20, 30] and later == 70


def test_a_cancelled_request_is_left_out_of_its_batch() -> None:
    log: list[list[int]] = []

    async def main() -> None:
        batcher = Batcher(_runner(log), lambda item: 1, max_instances=4, wait_s=0.1)
        gone = asyncio.ensure_future(batcher.submit(0))
        kept = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)
        gone.cancel()  # e.g. the request's deadline passed while its batch filled
        assert await kept == 10
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(main())
    assert log == [[1]]


def test_configure_changes_the_limits_of_later_batches() -> None:
    log: list[list[int]] = []

    async def main() -> None:
        batcher = Batcher(_runner(log), lambda item: 1, max_instances=2, wait_s=0.05)
        await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        batcher.configure(max_instances=3, wait_s=0.05)
        await asyncio.gather(*(batcher.submit(i) for i in range(3, 6)))

    asyncio.run(main())
    assert log == [[0, 1], [2], [3, 4, 5]]

