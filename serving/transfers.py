"""How the requests of a load travel: libcurl's multi interface (through pycurl) keeps many V2
requests in flight on kept-alive connections from one thread, and times each from its send (or
its scheduled arrival) to its full response. `serving.loadgen` and `serving.client` drive it;
`serving.request` builds the bodies and checks the answers.

Why libcurl: a load client on the server's machine takes CPU from the server. tuner's earlier
client (aiohttp on asyncio) spent 240-415 us of CPU per request on this 2-core machine, about 0.4
of a core at 1,500 req/s, and a trial measured through it saw 12-33% less than wrk (a C client)
saw on the same endpoint. Here HTTP is libcurl's (C); it hands the response's header lines and
body chunks to `list.append`, and Python checks the answer. See docs/measurement.md for the figures.

Poisson arrivals are kept on time by waiting in `select` with microsecond timeouts (asyncio's
epoll wait rounds its timeout up to whole milliseconds). No Ray import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import pycurl

from serving.request import Outcome, RequestSpec, check_answer
from serving.v2.types import HEADER_LENGTH

_CONNECTION_ERRORS = frozenset({
    pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT, pycurl.E_PARTIAL_FILE,
    pycurl.E_GOT_NOTHING, pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR,
})
_RETRY_PAUSE_S = 0.01  # after a connection error in a closed loop, so a dead server is not spun on
_LOOK_S = 0.05  # the longest wait before `keep_going` is asked again
_LENGTH_PREFIX = HEADER_LENGTH.lower().encode("ascii") + b":"  # a response header line starts so


class _Request:
    """One reusable libcurl handle with the body of the answer it is receiving."""

    __slots__ = ("easy", "chunks", "headers", "sent_headers", "t0")

    def __init__(self, spec: RequestSpec) -> None:
        self.easy = pycurl.Curl()
        self.chunks: list[bytes] = []   # the body, as libcurl hands it over
        self.headers: list[bytes] = []  # the response's header lines
        self.sent_headers: list[str] | None = None  # the request header lines set on the handle
        self.t0 = 0.0
        easy = self.easy
        easy.setopt(pycurl.URL, spec.url)
        easy.setopt(pycurl.POST, 1)
        easy.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: the client may run in a thread
        easy.setopt(pycurl.PROXY, "")  # straight to the endpoint, whatever http_proxy says
        easy.setopt(pycurl.TIMEOUT_MS, max(1, int(spec.timeout_s * 1000)))
        easy.setopt(pycurl.WRITEFUNCTION, self.chunks.append)
        easy.setopt(pycurl.HEADERFUNCTION, self.headers.append)  # list.append: no Python frame per line

    def header_length(self) -> str | None:
        """The response's Inference-Header-Content-Length, if it has one."""
        for line in self.headers:
            if line[:len(_LENGTH_PREFIX)].lower() == _LENGTH_PREFIX:
                return line[len(_LENGTH_PREFIX):].strip().decode("latin-1")
        return None

    def prepare(self, body: bytes, headers: list[str], t0: float) -> None:
        self.chunks.clear()
        self.headers.clear()
        self.t0 = t0
        self.easy.setopt(pycurl.POSTFIELDS, body)
        if headers is not self.sent_headers:  # bodies alike share one list: set once per handle
            self.easy.setopt(pycurl.HTTPHEADER, headers)
            self.sent_headers = headers


def _header_lines(headers: dict[str, str]) -> list[str]:
    # "Expect:" stops libcurl from asking for 100-continue before a large body (a round trip).
    return [f"{name}: {value}" for name, value in headers.items()] + ["Expect:"]


class Transfers:
    """The requests of one load client, sent with `spec`'s bodies in turn; connections are kept
    across calls. Not thread-safe: one thread drives it. Call `close()` when done."""

    def __init__(self, spec: RequestSpec) -> None:
        self.spec = spec
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, spec.max_connections)
        shared: dict[tuple[str, ...], list[str]] = {}  # equal header lines: one list, set once per handle
        self._bodies: list[tuple[bytes, list[str]]] = []
        for body, headers in spec.payloads:
            lines = _header_lines(headers)
            self._bodies.append((body, shared.setdefault(tuple(lines), lines)))
        self._idle: list[_Request] = []
        self._active: dict[pycurl.Curl, _Request] = {}
        self._sent = 0

    def _send(self, t0: float) -> None:
        request = self._idle.pop() if self._idle else _Request(self.spec)
        body, headers = self._bodies[self._sent % len(self._bodies)]
        self._sent += 1
        request.prepare(body, headers, t0)
        self._active[request.easy] = request
        self._multi.add_handle(request.easy)

    def _finished(self) -> list[Outcome]:
        """Run libcurl's transfers as far as they go without waiting; the requests that ended."""
        while self._multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        done: list[Outcome] = []
        while True:
            queued, ok, failed = self._multi.info_read()
            end = time.monotonic()
            for easy in ok:
                request = self._release(easy)
                status = int(easy.getinfo(pycurl.RESPONSE_CODE))
                done.append(check_answer(self.spec, status, b"".join(request.chunks), request.header_length(),
                                         request.t0, end))
            for easy, code, message in failed:
                request = self._release(easy)
                kind = ("timeout" if code == pycurl.E_OPERATION_TIMEDOUT else
                        "connection" if code in _CONNECTION_ERRORS else "other")
                text = f"no response within {self.spec.timeout_s} s" if kind == "timeout" else \
                    f"curl error {code}: {message}"
                done.append(Outcome(False, end - request.t0, end, None, kind, text))
            if not queued:
                return done

    def _release(self, easy: pycurl.Curl) -> _Request:
        self._multi.remove_handle(easy)
        request = self._active.pop(easy)
        self._idle.append(request)
        return request

    def _wait(self, until: float) -> None:
        """Until a transfer can go on, or `until` (monotonic seconds), or `_LOOK_S`."""
        wait_s = min(until - time.monotonic(), _LOOK_S)
        if wait_s <= 0:
            return
        if not self._active:
            time.sleep(wait_s)
            return
        curl_ms = self._multi.timeout()  # when libcurl has a timer of its own due; -1: none
        if curl_ms >= 0:
            wait_s = min(wait_s, curl_ms / 1000.0)
        start = time.monotonic()
        if self._multi.select(wait_s) == 0 and time.monotonic() - start < wait_s / 2:
            time.sleep(min(wait_s, 0.001))  # no socket to wait on yet (select returns at once)

    def closed(self, concurrency: int, more: Callable[[int], bool]) -> list[Outcome]:
        """A closed loop: `concurrency` requests in flight; each one that ends is followed by the
        next while `more(outcomes so far)`; returns when the last one in flight has ended."""
        outcomes: list[Outcome] = []
        retries: list[float] = []  # when to send again after a connection error
        for _ in range(concurrency):
            if more(0):
                self._send(time.monotonic())
        while self._active or retries:
            for outcome in self._finished():
                outcomes.append(outcome)
                if not more(len(outcomes)):
                    continue
                if outcome.kind == "connection":
                    retries.append(time.monotonic() + _RETRY_PAUSE_S)
                else:
                    self._send(time.monotonic())
            now = time.monotonic()
            for due in [t for t in retries if t <= now]:
                retries.remove(due)
                if more(len(outcomes)):
                    self._send(now)
            if self._active or retries:
                self._wait(min(retries, default=now + _LOOK_S))
        return outcomes

    def paced(self, arrivals: Iterable[float], keep_going: Callable[[], bool] = lambda: True) -> list[Outcome]:
        """An open loop: one request at each of `arrivals` (monotonic seconds, ascending) while
        `keep_going()`, its latency counted from that arrival; returns when all have ended."""
        outcomes: list[Outcome] = []
        upcoming = iter(arrivals)
        arrival = next(upcoming, None)
        while True:
            if arrival is not None and not keep_going():
                arrival = None
            now = time.monotonic()
            while arrival is not None and arrival <= now:
                self._send(arrival)
                arrival = next(upcoming, None)
            outcomes += self._finished()
            if arrival is None and not self._active:
                return outcomes
            self._wait(arrival if arrival is not None else now + _LOOK_S)

    def close(self) -> None:
        for easy in list(self._active):
            self._multi.remove_handle(easy)
        for request in [*self._active.values(), *self._idle]:
            request.easy.close()
        self._active.clear()
        self._idle.clear()
        self._multi.close()

    def __enter__(self) -> Transfers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
