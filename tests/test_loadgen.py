"""serving.loadgen against a real `serve run` of a small ONNX model over real HTTP.

The argument checks run without a server. The server tests share one local Ray cluster,
started in its own session; the last test stops it under load, so it must stay last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from serving.loadgen import (
    BackgroundLoad,
    LoadResult,
    drive,
    drive_background,
    run_until,
)
from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config
from serving.v2.types import InputMeta
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.models.spec import InputSpec

from helpers import free_port
from servers import Server, matmul_model, start_server

MODEL = "mm"
BATCH = 4
INPUTS = [InputSpec("x", (4,), "float32")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("loadgen")
    matmul_model(work / "mm.onnx", ["N", 4])
    config = make_serve_config(
        TrialConfig("cpu", BATCH, "fp32", 1, 1),
        ServedModel(MODEL, str(work / "mm.onnx")),
        ServingOptions(port=free_port()))
    srv = start_server(config, work)
    try:
        yield srv
    finally:
        srv.stop()


def _sane(result: LoadResult, instances_per_request: int) -> None:
    assert result.requests_failed == 0, (result.failed_by_kind, result.errors_sample)
    assert result.failed_by_status == {} and result.errors_sample == ()
    assert result.requests_ok > 0
    assert result.instances_ok == result.requests_ok * instances_per_request
    assert math.isclose(result.throughput_rps, result.instances_ok / result.duration_s)
    assert 0 < result.latency_p50_ms <= result.latency_p95_ms <= result.latency_p99_ms
    assert result.latency_p99_ms < 30_000


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "batch", "concurrency": 1}, "mode"),
        ({"mode": "offline"}, "concurrency"),
        ({"mode": "offline", "concurrency": 0}, "concurrency"),
        ({"mode": "server"}, "target_rps"),
        ({"mode": "server", "target_rps": -5}, "target_rps"),
        ({"mode": "offline", "concurrency": 1, "batch_size": 0}, "batch_size"),
        ({"mode": "offline", "concurrency": 1, "duration_s": 0}, "duration_s"),
        ({"mode": "offline", "concurrency": 1, "inputs": []}, "inputs"),
    ],
)
def test_arguments_are_checked_before_any_request(kwargs: dict, fragment: str) -> None:
    args = {"url_base": "http://127.0.0.1:9", "model_name": MODEL, "inputs": INPUTS,
            "batch_size": BATCH, "duration_s": 1.0} | kwargs
    with pytest.raises(TunerError, match=fragment):
        drive(**args)


def test_input_meta_with_its_batch_dimension_is_accepted_too() -> None:
    meta = InputMeta("x", "FP32", [-1, 4])
    result = drive("http://127.0.0.1:9", MODEL, [meta], "offline", BATCH, 0.2, concurrency=1)
    assert result.requests_ok == 0 and result.failed_by_kind.get("connection", 0) > 0


@pytest.mark.integration
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_offline_mode_keeps_requests_in_flight_and_measures_throughput(
    server: Server, binary: bool
) -> None:
    result = drive(server.base, MODEL, INPUTS, "offline", BATCH, 3.0, concurrency=4,
                   binary=binary)
    _sane(result, BATCH)
    assert result.mode == "offline"
    assert 3.0 <= result.duration_s < 8.0
    assert result.requests_ok >= 20  # a tiny model: well over 10 requests/s even here


@pytest.mark.integration
def test_server_mode_sends_poisson_arrivals_at_the_target_rate(server: Server) -> None:
    result = drive(server.base, MODEL, INPUTS, "server", BATCH, 4.0, target_rps=25, seed=3)
    _sane(result, 1)
    # 100 arrivals expected; a Poisson count is within +-30% with overwhelming probability.
    assert 70 <= result.requests_ok <= 130, result.requests_ok
    assert 25 * 0.6 < result.throughput_rps < 25 * 1.4


@pytest.mark.integration
def test_same_seed_sends_the_same_number_of_requests_in_server_mode(server: Server) -> None:
    counts = {drive(server.base, MODEL, INPUTS, "server", 1, 1.0, target_rps=40, seed=7)
              .requests_ok for _ in range(2)}
    assert len(counts) == 1


@pytest.mark.integration
def test_http_errors_are_counted_by_status(server: Server) -> None:
    result = drive(server.base, "no-such-model", INPUTS, "offline", BATCH, 1.0, concurrency=2)
    assert result.requests_ok == 0 and result.requests_failed > 0
    assert result.failed_by_status == {404: result.requests_failed}
    assert result.failed_by_kind == {"http_status": result.requests_failed}
    assert "no-such-model" in result.errors_sample[0] and math.isnan(result.latency_p50_ms)


@pytest.mark.integration
def test_wrong_inputs_are_counted_as_400(server: Server) -> None:
    wrong = [InputSpec("x", (5,), "float32")]
    result = drive(server.base, MODEL, wrong, "offline", 1, 0.5, concurrency=1)
    assert set(result.failed_by_status) == {400} and result.requests_ok == 0


@pytest.mark.integration
def test_background_client_runs_until_stopped(server: Server) -> None:
    with drive_background(server.base, MODEL, INPUTS, "server", 1, target_rps=30) as load:
        assert isinstance(load, BackgroundLoad)
        time.sleep(2.0)
        assert load.running
        result = load.stop()
    assert not load.running
    _sane(result, 1)
    assert 1.5 < result.duration_s < 5.0


@pytest.mark.integration
def test_failures_are_counted_when_the_server_stops_mid_run(server: Server) -> None:
    import threading

    stop = threading.Event()
    outcome: list[LoadResult] = []
    thread = threading.Thread(target=lambda: outcome.append(run_until(
        stop, server.base, MODEL, INPUTS, "offline", BATCH, concurrency=2, timeout_s=10)))
    thread.start()
    try:
        time.sleep(2.0)
        server.stop()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(60)
    (result,) = outcome
    assert result.requests_ok > 0 and result.requests_failed > 0
    assert sum(result.failed_by_kind.values()) == result.requests_failed
    assert result.failed_by_kind.get("connection", 0) > 0  # refused once the proxy is gone
    assert sum(result.failed_by_status.values()) == result.failed_by_kind.get("http_status", 0)
    assert result.errors_sample and len(result.errors_sample) <= 5
    assert np.isfinite(result.latency_p99_ms)
