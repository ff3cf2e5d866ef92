"""A V2 client that measures window by window: one event loop and one connection pool kept across
windows (no reconnect between them), each window a closed loop or a Poisson stream, each request's
latency recorded. What the served measurement level drives an endpoint with.

No Ray: asyncio and aiohttp; its requests and their checks are `serving.request`'s, as `serving.loadgen`'s.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from serving.auth import BearerToken
from serving.pacing import paced_requests
from serving.request import InputLike, Mode, Outcome, RequestSpec, request_spec, send_one

_RETRY_PAUSE_S = 0.01


@dataclass(frozen=True)
class Window:
    """One window: latencies of the requests that succeeded, how long it lasted, what failed."""

    latencies_s: np.ndarray
    elapsed_s: float
    instances: int
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    errors_sample: tuple[str, ...] = ()

    @property
    def requests_failed(self) -> int:
        return sum(self.failed_by_kind.values())


class WindowClient:
    """Drives `url_base`/v2/models/`model_name`/infer (with `auth_token`, as ``Authorization: Bearer``);
    call `close()` when done."""

    def __init__(self, url_base: str, model_name: str, inputs: Sequence[InputLike], *, instances: int = 1,
                 concurrency: int = 1, binary: bool = True, timeout_s: float = 30.0, seed: int = 0,
                 auth_token: BearerToken | None = None) -> None:
        self.spec: RequestSpec = request_spec(url_base, model_name, inputs, "offline", instances, concurrency,
                                              None, binary, seed, timeout_s, max(256, concurrency), instances,
                                              auth_token=auth_token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="v2-client")
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open())
        self._sent = 0

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.spec.max_connections),
                                     timeout=aiohttp.ClientTimeout(total=self.spec.timeout_s))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def closed_loop(self, seconds: float, min_requests: int, concurrency: int | None = None) -> Window:
        """`concurrency` requests always in flight for at least `seconds` and `min_requests`."""
        return self._run(self._closed(seconds, min_requests, concurrency or self.spec.concurrency))

    def poisson(self, seconds: float, rate_rps: float, seed: int) -> Window:
        """Requests arriving at Poisson times at `rate_rps` for `seconds`; latency from arrival."""
        return self._run(self._poisson(seconds, rate_rps, seed))

    async def _closed(self, seconds: float, min_requests: int, concurrency: int) -> Window:
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome] = []
        start = loop.time()
        end = start + seconds

        async def worker() -> None:
            while loop.time() < end or len(outcomes) < min_requests:
                i = self._sent
                self._sent += 1
                outcome = await send_one(self._session, self.spec, i, loop.time())
                outcomes.append(outcome)
                if outcome.kind == "connection":
                    await asyncio.sleep(_RETRY_PAUSE_S)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return self._window(outcomes, max(o.end for o in outcomes) - start)

    async def _poisson(self, seconds: float, rate_rps: float, seed: int) -> Window:
        loop = asyncio.get_running_loop()
        start = loop.time()

        def request(arrival: float) -> Awaitable[Outcome]:
            i, self._sent = self._sent, self._sent + 1
            return send_one(self._session, self.spec, i, arrival)

        outcomes = await paced_requests(loop, rate_rps, seed, start, start + seconds, request,  # see `pace`
                                        exact_count=True)  # a window: exactly the target rate
        return self._window(outcomes, max(seconds, max((o.end for o in outcomes), default=start) - start))

    def _window(self, outcomes: list[Outcome], elapsed_s: float) -> Window:
        ok = [o.latency_s for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        sample: list[str] = []
        for o in failed:
            if o.message not in sample and len(sample) < 5:
                sample.append(o.message)
        return Window(np.asarray(ok, dtype=float), float(elapsed_s), self.spec.instances,
                      dict(Counter(o.kind or "other" for o in failed)), tuple(sample))

    def close(self) -> None:
        self._run(self._session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


__all__ = ["Mode", "Window", "WindowClient"]
