"""The three user jobs on real parts, through the real CLI, in a scratch directory:
tune (local Ray cluster, ONNX Runtime, SQLite) -> show --json -> resume -> dashboard ->
promote -> serve (Ray Serve, HTTP) -> infer digits.

Short measurement windows keep it a few minutes on a 2-core machine; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from helpers import free_port, start_tuner, stop, tuner, wait_http

pytestmark = pytest.mark.integration

SMALL_SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, fp16, int8]}
    batch_size: {type: int, low: 1, high: 32, pow2: true}
    replicas: {type: int, low: 1, high: 2}
    threads_per_replica: {type: int, low: 1, high: 2}
  fpga:
    device: {type: categorical, choices: [aws-f1]}
    precision: {type: categorical, choices: [int8]}
    batch_size: {type: int, low: 1, high: 32, pow2: true}
    replicas: {type: int, low: 1, high: 2}
measurement: {warmup_s: 0.1, window_s: 0.25, min_windows: 2, max_windows: 3, trial_timeout_s: 120}
"""

CONFIG_KEYS = {"platform", "batch_size", "precision", "replicas", "threads_per_replica"}
METRIC_KEYS = {"throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
               "accuracy", "cost_usd_per_million", "estimated", "error_band"}





@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    (work / "small.yaml").write_text(SMALL_SPACE)
    # random: the default sampler rightly skips FPGA configs it knows are dominated; 2 repeats of each
    # finalist keep the fixture short (their picking may take up to 3 rounds when the medians reorder)
    run = tuner(work, "tune", "--model", "digits-cnn", "--trials", "8", "--space", "small.yaml", "--seed", "1",
                "--sampler", "random", "--finalist-repeats", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Feasible Pareto front" in run.stdout and "note: platform 'gpu' left out" not in run.stdout
    (work / "tune.log").write_text(run.stdout)
    return work


def show(work: Path) -> dict:
    out = tuner(work, "show", "--study", "digits-cnn", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_show_json_follows_the_contract(studied: Path) -> None:
    record = show(studied)
    assert record["study"] == "digits-cnn"
    assert record["directions"] == ["maximize", "minimize", "minimize"]
    assert record["objectives"] == ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]
    complete = [t for t in record["trials"] if t["state"] == "COMPLETE"]
    assert len(complete) == 8
    assert {t["config"]["platform"] for t in complete} == {"cpu", "fpga"}
    assert len({t["config"]["precision"] for t in complete}) >= 3
    for t in complete:
        assert set(t["config"]) == CONFIG_KEYS and set(t["metrics"]) == METRIC_KEYS
        assert isinstance(t["pareto"], bool) and isinstance(t["feasible"], bool)
        assert os.path.isabs(t["artifact"]) and Path(t["artifact"]).is_file()
        assert t["metrics"]["estimated"] is (t["config"]["platform"] == "fpga")
        band = t["metrics"]["error_band"]  # an estimate's expected error; none for a measurement
        if t["config"]["platform"] == "fpga":
            assert 1 <= band["typical_factor"] <= band["worst_factor"] and isinstance(band["calibrated"], bool)
        else:
            assert band is None
        assert t["metrics"]["throughput_rps"] > 0 and t["metrics"]["cost_usd_per_million"] > 0
        assert t["metrics"]["latency_p50_ms"] <= t["metrics"]["latency_p95_ms"] <= t["metrics"]["latency_p99_ms"]
        c = t["config"]
        if c["platform"] == "cpu":
            assert c["replicas"] * c["threads_per_replica"] <= os.cpu_count()
        if c["precision"] == "fp32":
            assert t["metrics"]["accuracy"] >= 0.95
    assert any(t["pareto"] for t in complete)
    assert all(t["feasible"] for t in complete if t["pareto"])
    finalists = [t for t in complete if t["remeasured"]]
    assert finalists  # the measured front was re-measured before the study ended
    for t in finalists:
        # The median is of the (here 2) re-measurements only; the measurement that made the trial a
        # finalist is biased high and is kept apart, as first_measurement.
        assert 1 <= t["remeasured"]["samples"] <= 2 and t["remeasured"]["first_measurement"]["throughput_rps"] > 0


def test_estimates_carry_their_error_band_in_the_tune_log_and_show(studied: Path) -> None:
    log = (studied / "tune.log").read_text()
    progress = [line for line in log.splitlines() if line.startswith("[") and " fpga[" in line and "inf/s" in line]
    assert progress and all(re.search(r"ESTIMATED x[\d.]+/x[\d.]+( uncalibrated)? \(typical/worst\)", line)
                            for line in progress), progress
    out = tuner(studied, "show", "--study", "digits-cnn")
    assert out.returncode == 0, out.stderr
    fpga = [line for line in out.stdout.splitlines() if "fpga[" in line and "ESTIMATED" in line]
    assert fpga and all(re.search(r"ESTIMATED x[\d.]+/x[\d.]+", line) for line in fpga), fpga
    assert "ESTIMATED xA/xB" in out.stdout  # the legend


def test_show_piped_into_head_stops_quietly(studied: Path) -> None:
    """`tuner show | head -3`: the reader closes the pipe early; no traceback, exit 141."""
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "show", "--study", "digits-cnn"], cwd=studied,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # what head does after its lines; here before tuner writes any
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141, (proc.returncode, err)


def test_measure_json_is_the_whole_standard_output(studied: Path) -> None:
    # A served measurement starts and stops Ray Serve, whose shutdown makes Ray print a line of its
    # own; with --json that line, and tuner's progress, must go to stderr, not before the JSON.
    out = tuner(studied, "measure", "--space", "small.yaml", "--platform", "cpu", "--precision", "fp32",
                "--batch-size", "8", "--measure", "served", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["level"] == "served" and result["metrics"]["throughput_rps"] > 0
    assert "top-1 accuracy of fp32" in out.stderr  # the progress a plain run prints went to stderr


def test_rerun_continues_the_study_to_the_new_count(studied: Path) -> None:
    run = tuner(studied, "tune", "--model", "digits-cnn", "--trials", "9", "--space", "small.yaml",
                "--finalists", "0")  # the finalists of the first run are under test above
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8 complete trials, running until 9" in run.stdout
    assert "training digits-cnn" not in run.stdout  # the cached weights and ONNX were reused
    assert len([t for t in show(studied)["trials"] if t["state"] == "COMPLETE"]) == 9


def test_dashboard_lists_the_study_and_its_trials(studied: Path) -> None:
    port = free_port()
    proc = start_tuner(studied, "dashboard", "--port", str(port))
    try:
        wait_http(f"http://127.0.0.1:{port}/api/studies", proc, 60)
        studies = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=5).json()["study_summaries"]
        names = {s["study_name"] for s in studies}  # the search, and its companions (tuner.study.companions)
        assert "digits-cnn" in names and "digits-cnn.measured" in names
        assert names <= {"digits-cnn", "digits-cnn.measured", "digits-cnn.estimated"}
        sid = next(s["study_id"] for s in studies if s["study_name"] == "digits-cnn")
        detail = requests.get(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=10).json()
        assert len(detail["trials"]) >= 8
        attrs = {a["key"] for a in detail["trials"][0]["user_attrs"]}
        assert {"config", "feasible", "throughput_rps", "estimated"} <= attrs
    finally:
        log = stop(proc)
    assert f"http://127.0.0.1:{port}/" in log


def test_promote_serve_and_classify_digits_over_http(studied: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    from tuner.models.digits import load_data

    port = free_port()
    out = tuner(studied, "promote", "--study", "digits-cnn", "--out", "serve.yaml", "--port", str(port))
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((studied / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    assert app["import_path"] == "serving.app:build_app"
    assert config["http_options"]["host"] == "127.0.0.1"
    dep = app["deployments"][0]
    assert dep["max_ongoing_requests"] >= dep["user_config"]["batch_size"]

    proc = start_tuner(studied, "serve", "serve.yaml")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v2/health/ready", proc, 150)
        data = load_data()
        x, y = data.x_test[:200], data.y_test[:200]
        correct = 0
        for i in range(0, len(x), 8):
            chunk = x[i : i + 8]
            body = {"inputs": [{"name": "x", "shape": list(chunk.shape), "datatype": "FP32",
                                "data": chunk.ravel().tolist()}]}
            r = requests.post(f"{base}/v2/models/digits-cnn/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
            logits = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(len(chunk), -1)
            correct += int((logits.argmax(1) == y[i : i + 8]).sum())
        assert correct / len(x) >= 0.95
        bad = requests.post(f"{base}/v2/models/digits-cnn/infer", data=b"{not json", timeout=10,
                            headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "error" in bad.json()
        wrong = {"inputs": [{"name": "x", "shape": [1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
        assert requests.post(f"{base}/v2/models/digits-cnn/infer", json=wrong, timeout=10).status_code == 400
        assert requests.get(f"{base}/v2/health/ready", timeout=5).status_code == 200  # still serving
    finally:
        stop(proc)


def test_promote_refuses_an_fpga_trial_and_names_a_servable_one(studied: Path) -> None:
    fpga = [t["number"] for t in show(studied)["trials"] if t["config"]["platform"] == "fpga" and t["metrics"]]
    out = tuner(studied, "promote", "--study", "digits-cnn", "--trial", str(fpga[0]), "--out", "x.yaml")
    assert out.returncode == 2
    assert "cannot be served" in out.stderr and "--trial" in out.stderr
    assert not (studied / "x.yaml").exists()
