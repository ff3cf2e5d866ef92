"""GPU trials in the product, on a real local Ray cluster that declares one GPU (this machine has
none): the probe on the GPU node, replicas as Ray actors holding `num_gpus` (whole or shared),
the records, infeasible precisions, the served level, and the whole CLI path (tune with cpu, gpu
and fpga in one study, show --json, promote --trial, tuner serve answering V2 infer).

Measurements run through the TEST backend (ONNX Runtime on the CPU behind the declared GPU):
every GPU code path but CUDA itself is exercised, and every record says test_backend."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from tuner.config import TrialConfig
from tuner.evaluators.gpu import GpuSetup
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import PreparedModel, prepare_model
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings

from helpers import free_port, start_tuner, stop, tuner, wait_http

pytestmark = pytest.mark.integration

QUICK = MeasurementSettings(warmup_s=0.2, window_s=0.5, min_windows=2, max_windows=3, target_requests=50)


@pytest.fixture(scope="module")
def model() -> PreparedModel:
    return prepare_model("digits-cnn", ModelOptions(), {"fp32", "fp16"}, log=lambda s: None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    c = RayCluster(num_gpus=1)
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def setup(cluster: RayCluster) -> GpuSetup:
    found, note = cluster.probe_gpu("test-cpu")
    assert found is not None, note
    return found


def runner(model: PreparedModel, cluster: RayCluster, setup: GpuSetup, level: str = "engine") -> RayRunner:
    return RayRunner(model, QUICK, LoadSpec(), {}, cluster, level=level, served=ServedSettings(), gpu=setup)


def test_the_probe_offers_the_declared_gpu_with_the_test_backend_only(cluster: RayCluster, setup: GpuSetup) -> None:
    assert setup.backend == "test-cpu" and setup.test_backend and setup.gpus == 1 and setup.device == "test-cpu"
    info = cluster.info({}, setup)
    assert info.can_run("gpu") and info.total_gpus == 1
    # The real backend needs a GPU runtime on the GPU node; CPU-only onnxruntime and torch have none.
    real, note = cluster.probe_gpu("ort")
    assert real is None and note.startswith("no GPU runtime on the GPU nodes") and "no CUDAExecutionProvider" in note
    assert "tuner[gpu]" in note  # the fix
    assert cluster.info({}, None, note).why_not("gpu") == note


def test_a_gpu_replica_is_an_actor_holding_a_whole_gpu_and_the_trial_records_it(model, cluster, setup) -> None:
    r = runner(model, cluster, setup)
    try:
        result = r.run(TrialConfig("gpu", 8, "fp32", 1))
    finally:
        r.shutdown()
    gpu = result.details["gpu"]
    assert result.throughput_rps > 0 and result.details["stable"] in (True, False)
    assert gpu["backend"] == "test-cpu" and gpu["test_backend"] is True
    assert gpu["num_gpus_per_replica"] == 1.0 and gpu["gpus_used"] == 1 and gpu["memory_fraction"] is None
    assert gpu["gpu_memory_peak_mib"] is None and "TEST backend" in gpu["gpu_memory_source"]
    (replica,) = result.details["replicas"]
    assert replica["cuda_visible_devices"] == "0"  # Ray gave the actor the declared GPU
    assert replica["backend"] == "test-cpu" and replica["device"] == "cpu (test backend)"
    assert len(result.details["placement"][0]["cores"]) == 1  # one host core drives the GPU


def test_two_replicas_share_one_gpu_with_half_each(model, cluster, setup) -> None:
    r = runner(model, cluster, setup)
    try:
        result = r.run(TrialConfig("gpu", 8, "fp16", 2))
    finally:
        r.shutdown()
    gpu = result.details["gpu"]
    assert gpu["num_gpus_per_replica"] == 0.5 and gpu["replicas_per_gpu"] == 2 and gpu["gpus_used"] == 1
    assert gpu["memory_fraction"] == 0.5 and gpu["gpu_fraction_used"] == 1.0
    assert [i["cuda_visible_devices"] for i in result.details["replicas"]] == ["0", "0"]
    assert {i["memory_fraction"] for i in result.details["replicas"]} == {0.5}


def test_a_precision_the_backend_cannot_run_is_infeasible_not_failed(model, cluster, setup) -> None:
    r = runner(model, cluster, setup)
    try:
        with pytest.raises(TrialFailed) as caught:
            r.run(TrialConfig("gpu", 8, "bf16", 1))
    finally:
        r.shutdown()
    assert caught.value.infeasible and "bf16" in caught.value.reason


def test_a_served_gpu_trial_runs_on_serve_with_num_gpus_and_gives_the_gpu_back(model, cluster, setup) -> None:
    r = runner(model, cluster, setup, level="served")
    try:
        result = r.run(TrialConfig("gpu", 4, "fp32", 1))
        d = result.details
        assert d["level"] == "served" and d["requests_failed"] == 0 and result.throughput_rps > 0
        assert d["serve_deployment"]["ray_actor_options"]["num_gpus"] == 1.0
        assert d["gpu"]["num_gpus_per_replica"] == 1.0 and d["engine"]["throughput_rps"] > 0
        # The application holds the GPU between served trials; an engine-level GPU trial gets it back.
        after = r.engine(TrialConfig("gpu", 4, "fp32", 1))
        assert after.details["gpu"]["num_gpus_per_replica"] == 1.0
    finally:
        r.shutdown()


SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, int8]}
    batch_size: {type: int, low: 4, high: 16, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
  gpu:
    precision: {type: categorical, choices: [fp32, fp16, bf16]}
    batch_size: {type: int, low: 4, high: 16, pow2: true}
    replicas: {type: int, low: 1, high: 2}
  fpga:
    device: {type: categorical, choices: [aws-f1]}
    precision: {type: categorical, choices: [int8]}
    batch_size: {type: int, low: 4, high: 16, pow2: true}
    replicas: {type: int, low: 1, high: 1}
measure: engine
measurement: {warmup_s: 0.1, window_s: 0.25, min_windows: 2, max_windows: 3, trial_timeout_s: 120}
"""


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("gpu-e2e")
    (work / "space.yaml").write_text(SPACE)
    # random, seed 7: 10 draws with cpu, two gpu precisions and two fpga trials (the default sampler
    # rightly skips FPGA configurations it knows are dominated, so whether it tries one is chance)
    run = tuner(work, "tune", "--model", "digits-cnn", "--trials", "10", "--space", "space.yaml", "--num-gpus", "1",
                "--gpu-backend", "test-cpu", "--finalists", "1", "--finalist-repeats", "1", "--sampler", "random",
                "--seed", "7")
    assert run.returncode == 0, run.stdout + run.stderr
    (work / "tune.log").write_text(run.stdout)
    return work


def test_one_study_measures_cpu_and_gpu_and_estimates_fpga(studied: Path) -> None:
    log = (studied / "tune.log").read_text()
    assert "gpu platform offered with the TEST backend" in log and "gpu precision bf16 left out" in log
    out = tuner(studied, "show", "--json")
    assert out.returncode == 0, out.stderr
    trials = [t for t in json.loads(out.stdout)["trials"] if t["state"] == "COMPLETE"]
    assert {t["config"]["platform"] for t in trials} == {"cpu", "gpu", "fpga"}
    for t in trials:
        if t["config"]["platform"] == "gpu":
            assert t["config"]["precision"] != "bf16"
            assert t["gpu"]["backend"] == "test-cpu" and t["gpu"]["test_backend"] is True
            assert t["gpu"]["num_gpus_per_replica"] == 1.0 / t["config"]["replicas"]
            assert "gpu_memory_peak_mib" in t["gpu"] and t["metrics"]["cost_usd_per_million"] > 0
        else:
            assert t["gpu"] is None


def test_promote_a_gpu_trial_and_serve_it_on_a_declared_gpu(studied: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    trials = json.loads(tuner(studied, "show", "--json").stdout)["trials"]
    gpu = next(t for t in trials if t["state"] == "COMPLETE" and t["config"]["platform"] == "gpu")
    port = free_port()
    out = tuner(studied, "promote", "--trial", str(gpu["number"]), "--out", "gpu.yaml", "--port", str(port))
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((studied / "gpu.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    dep = config["applications"][0]["deployments"][0]
    assert dep["ray_actor_options"] == {"num_cpus": 1, "num_gpus": gpu["gpu"]["num_gpus_per_replica"]}
    assert dep["user_config"]["providers"] == ["CPUExecutionProvider"]
    # The default policy never promotes a TEST-backend trial.
    default = tuner(studied, "promote", "--dry-run")
    assert default.returncode == 0 and "promoted trial" in default.stdout and " gpu " not in default.stdout.split("\n")[0]

    proc = start_tuner(studied, "serve", "gpu.yaml", "--num-gpus", "1")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/v2/health/ready", proc, 150)
        x = np.zeros((2, 1, 8, 8), np.float32)
        body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        r = requests.post(f"{base}/v2/models/digits-cnn/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["shape"] == [2, 10]
        meta = requests.get(f"{base}/v2/models/digits-cnn", timeout=10).json()
        assert meta["parameters"]["providers"][0] == "CPUExecutionProvider"
    finally:
        stop(proc)


def test_promote_deploy_runs_and_verifies_a_gpu_trial_on_a_declared_gpu(studied: Path) -> None:
    trials = json.loads(tuner(studied, "show", "--json").stdout)["trials"]
    gpu = next(t for t in trials if t["state"] == "COMPLETE" and t["config"]["platform"] == "gpu")
    tuner(studied, "undeploy", timeout=180)  # a serving cluster left without GPUs would be refused
    try:
        out = tuner(studied, "promote", "--trial", str(gpu["number"]), "--out", "deployed.yaml", "--port",
                    str(free_port()), "--deploy", "--num-gpus", "1", "--verify-s", "4")
        assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: verification failed, and said so
        assert f"deployed trial #{gpu['number']}" in out.stdout
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("verification ("))
        served = re.search(r"served ([\d,.]+) inf/s", line)
        assert served is not None and float(served.group(1).replace(",", "")) > 0, line
        again = tuner(studied, "promote", "--trial", str(gpu["number"]), "--out", "x.yaml", "--deploy",
                      "--num-gpus", "2", "--verify-s", "0")
        assert again.returncode == 2 and "tuner undeploy" in again.stderr
    finally:
        tuner(studied, "undeploy", timeout=180)


def test_measure_runs_one_gpu_configuration(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)  # its short measuring windows: the path is under test here
    out = tuner(tmp_path, "measure", "--platform", "gpu", "--precision", "fp32", "--batch-size", "8", "--replicas", "2",
                "--num-gpus", "1", "--gpu-backend", "test-cpu", "--measure", "engine", "--json", "--space", "space.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["metrics"]["throughput_rps"] > 0 and result["level"] == "engine"
    assert result["gpu"]["backend"] == "test-cpu" and result["gpu"]["num_gpus_per_replica"] == 0.5
    assert len(result["measurement"]["hardware"]["cores_used"]) == 2  # one host core per replica
    refused = tuner(tmp_path, "measure", "--platform", "gpu", "--precision", "fp32", "--batch-size", "8")
    assert refused.returncode == 2 and "the Ray cluster has no GPUs" in refused.stderr


def test_serve_refuses_num_gpus_with_an_existing_cluster(studied: Path) -> None:
    gpu = next(t for t in json.loads(tuner(studied, "show", "--json").stdout)["trials"]
               if t["state"] == "COMPLETE" and t["config"]["platform"] == "gpu")
    assert tuner(studied, "promote", "--trial", str(gpu["number"]), "--out", "again.yaml").returncode == 0
    out = tuner(studied, "serve", "again.yaml", "--num-gpus", "1", "--ray-address", "127.0.0.1:1")
    assert out.returncode == 2 and "--num-gpus" in out.stderr and "Drop --num-gpus" in out.stderr
