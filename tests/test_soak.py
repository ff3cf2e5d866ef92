"""The serving endpoint under a soak (loopback only): concurrent clients for a bounded time,
then a replica killed while the load runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from serving.loadgen import drive, drive_background
from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config, write_serve_config
from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model

from helpers import free_port

pytestmark = pytest.mark.integration

SLO_P99_MS = 500.0



def replicas() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if any("ServeReplica:tuner:ModelServer" in c for c in (p.info["cmdline"] or []))]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("soak")
    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    port = free_port()
    config = make_serve_config(
        TrialConfig("cpu", 8, "fp32", 2, 1),
        ServedModel("digits-cnn", model.variants["fp32"].path, {"x": [1, 8, 8]}),
        ServingOptions(port=port))
    write_serve_config(config, work / "serve.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "serve", "serve.yaml"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/v2/health/ready", timeout=2).status_code == 200 and len(replicas()) == 2:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    yield base, model.inputs
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_soak_of_concurrent_clients_has_no_errors_and_meets_the_slo(server) -> None:
    base, inputs = server
    result = drive(base, "digits-cnn", inputs, "offline", batch_size=4, duration_s=15, concurrency=8)
    assert result.requests_failed == 0, result.errors_sample
    assert result.requests_ok > 100
    assert result.latency_p99_ms < SLO_P99_MS, result.summary()


def test_a_killed_replica_is_replaced_and_errors_stay_bounded(server) -> None:
    base, inputs = server
    before = replicas()
    assert len(before) == 2
    with drive_background(base, "digits-cnn", inputs, "server", 1, target_rps=50) as load:
        time.sleep(3)
        before[0].kill()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = [p for p in replicas() if p.pid != before[0].pid]
            if len(now) == 2:
                break
            time.sleep(0.5)
        time.sleep(3)
        result = load.stop()
    assert len([p for p in replicas() if p.pid != before[0].pid]) == 2     # replaced
    assert result.requests_ok > 200
    assert result.requests_failed <= max(10, 0.05 * result.requests_ok), result.summary()  # bounded
