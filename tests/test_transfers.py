"""serving.transfers (libcurl's multi interface) and serving.pacing against a real HTTP server in
this process (the standard library's, HTTP/1.1 with keep-alive): closed loops, Poisson arrivals on
time, and failures by kind. Ray Serve endpoints are driven in test_loadgen and the served trials."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from serving.pacing import arrivals, window_arrivals_s
from serving.request import RequestSpec, request_spec
from serving.transfers import Transfers
from serving.v2.wire import encode_infer_response
from tuner.models.spec import InputSpec

from helpers import free_port

INPUTS = [InputSpec("x", (4,), "float32")]


class Answers(BaseHTTPRequestHandler):
    """A V2 answer of one row per instance; `/slow/...` waits 1 s first, `/busy/...` answers 503."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a V2 server
    wbufsize = 1 << 16              # headers and body in one write: not two segments that Nagle
    disable_nagle_algorithm = True  # holds for the client's delayed ack (40 ms an answer)
    received: list[float] = []      # monotonic arrival times, in this process

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        Answers.received.append(time.monotonic())
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/slow/"):
            time.sleep(1.0)
        if self.path.startswith("/busy/"):
            self._answer(503, b"queue full", {})
            return
        encoded = encode_infer_response("m", {"y": np.zeros((2, 3), np.float32)}, binary_outputs={"y"})
        self._answer(200, encoded.body, encoded.headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def spec(base: str, model: str = "m", timeout_s: float = 10.0) -> RequestSpec:
    return request_spec(base, model, INPUTS, "offline", 2, 4, None, True, 0, timeout_s, 8)


def test_closed_loop_keeps_its_requests_in_flight_until_told_to_stop(base: str) -> None:
    with Transfers(spec(base)) as transfers:
        end = time.monotonic() + 0.5
        outcomes = transfers.closed(4, lambda done: time.monotonic() < end or done < 50)
        again = transfers.closed(2, lambda done: done < 7)
    assert len(outcomes) >= 50 and all(o.ok for o in outcomes), outcomes[:3]
    assert 7 <= len(again) <= 8 and all(o.ok for o in again)  # the one in flight when told ends too
    assert all(0 < o.latency_s < 5 for o in outcomes)


def test_poisson_requests_leave_at_their_scheduled_arrivals(base: str) -> None:
    Answers.received.clear()
    with Transfers(spec(base)) as transfers:
        start = time.monotonic() + 0.05
        scheduled = list(arrivals(300.0, 3, start, start + 1.0, exact_count=True))
        outcomes = transfers.paced(scheduled)
    assert len(outcomes) == 300 and all(o.ok for o in outcomes)
    late_ms = 1000 * (np.array(sorted(Answers.received)) - np.array(scheduled))
    # Sent by the client and read by the server's thread: asyncio's epoll-timed sends were
    # 0.67 ms late at the median before any server was involved.
    assert late_ms.min() >= 0 and np.median(late_ms) < 1.0, np.percentile(late_ms, [50, 95])


def test_a_stopped_stream_sends_no_more_and_waits_for_those_in_flight(base: str) -> None:
    with Transfers(spec(base)) as transfers:
        start = time.monotonic()
        outcomes = transfers.paced(arrivals(200.0, 5, start), lambda: time.monotonic() < start + 0.3)
    assert 30 <= len(outcomes) <= 100 and all(o.ok for o in outcomes)  # ~60 in 0.3 s at 200 req/s
    assert max(o.end for o in outcomes) - start < 1.5


def test_failures_are_told_apart_by_kind(base: str) -> None:
    with Transfers(spec(f"{base}/busy")) as transfers:
        busy = transfers.closed(1, lambda done: done < 3)
    assert [(o.ok, o.status, o.kind) for o in busy] == [(False, 503, "http_status")] * 3
    assert busy[0].message == "HTTP 503: queue full"
    with Transfers(spec(f"{base}/slow", timeout_s=0.2)) as transfers:
        (slow,) = transfers.closed(1, lambda done: done < 1)
    assert (slow.kind, slow.message) == ("timeout", "no response within 0.2 s") and slow.latency_s < 0.9
    with Transfers(spec(f"http://127.0.0.1:{free_port()}")) as transfers:
        refused = transfers.closed(1, lambda done: done < 3)
    assert {o.kind for o in refused} == {"connection"} and "curl error 7" in refused[0].message


def test_an_answer_with_the_wrong_rows_is_a_bad_response(base: str) -> None:
    three = request_spec(base, "m", INPUTS, "offline", 3, 1, None, True, 0, 10.0, 8)  # the server answers 2
    with Transfers(three) as transfers:
        (outcome,) = transfers.closed(1, lambda done: done < 1)
    assert outcome.kind == "bad_response" and "expected 3 rows" in outcome.message


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


def test_an_open_stream_is_seeded_and_a_window_is_the_window_arrivals() -> None:
    stream = list(arrivals(200.0, 5, 10.0, 11.0))
    assert stream == list(arrivals(200.0, 5, 10.0, 11.0)) and 140 < len(stream) < 260
    assert all(10.0 < a < 11.0 for a in stream) and stream == sorted(stream)
    assert list(arrivals(300.0, 3, 2.0, 2.5, exact_count=True)) == pytest.approx(
        list(2.0 + window_arrivals_s(300.0, 0.5, 3)))
