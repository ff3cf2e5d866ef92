"""A V2 client that measures window by window: one set of connections kept across windows (no
reconnect between them), each window a closed loop or a Poisson stream, each request's latency
recorded. What the served measurement level drives an endpoint with.

No Ray: libcurl through `serving.transfers`; its requests and their checks are `serving.request`'s,
as `serving.loadgen`'s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from serving.auth import BearerToken
from serving.pacing import arrivals
from serving.request import InputLike, Mode, Outcome, RequestSpec, request_spec
from serving.transfers import Transfers


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
    """Drives `url_base`/v2/models/`model_name`/infer (with `auth_token`, as ``Authorization: Bearer``)
    from the calling thread; call `close()` when done."""

    def __init__(self, url_base: str, model_name: str, inputs: Sequence[InputLike], *, instances: int = 1,
                 concurrency: int = 1, binary: bool = True, timeout_s: float = 30.0, seed: int = 0,
                 auth_token: BearerToken | None = None) -> None:
        self.spec: RequestSpec = request_spec(url_base, model_name, inputs, "offline", instances, concurrency,
                                              None, binary, seed, timeout_s, max(256, concurrency), instances,
                                              auth_token=auth_token)
        self._transfers = Transfers(self.spec)

    def closed_loop(self, seconds: float, min_requests: int, concurrency: int | None = None) -> Window:
        """`concurrency` requests always in flight for at least `seconds` and `min_requests`."""
        start = time.monotonic()
        end = start + seconds
        outcomes = self._transfers.closed(concurrency or self.spec.concurrency,
                                          lambda done: time.monotonic() < end or done < min_requests)
        return self._window(outcomes, max(o.end for o in outcomes) - start)

    def poisson(self, seconds: float, rate_rps: float, seed: int) -> Window:
        """Requests arriving at Poisson times at `rate_rps` for `seconds`; latency from arrival."""
        start = time.monotonic()
        outcomes = self._transfers.paced(arrivals(rate_rps, seed, start, start + seconds,
                                                  exact_count=True))  # a window: exactly the target rate
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
        self._transfers.close()


__all__ = ["Mode", "Window", "WindowClient"]
