"""Trials on real Ray: time-out, a crashed worker, resources that can never fit, out of
memory (tests/test_two_node.py covers placement on a two-node cluster)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from tuner.config import TrialConfig
from tuner.models import cache
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings

pytestmark = pytest.mark.integration

QUICK = MeasurementSettings(warmup_s=0.1, window_s=0.3, min_windows=2, max_windows=2, target_requests=50)


@pytest.fixture(scope="module")
def digits() -> PreparedModel:
    return prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)


@pytest.fixture(scope="module")
def local_cluster():
    cluster = RayCluster(None)
    yield cluster
    cluster.shutdown()


def runner_for(model: PreparedModel, cluster: RayCluster, settings: MeasurementSettings = QUICK) -> RayRunner:
    return RayRunner(model, settings, LoadSpec(), {}, cluster)


def cpu(batch: int = 8, replicas: int = 1, threads: int = 1) -> TrialConfig:
    return TrialConfig("cpu", batch, "fp32", replicas, threads)


def replica_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if any("ReplicaHost" in part for part in (p.info["cmdline"] or [])):
            out.append(p)
    return out


def test_time_out_fails_the_trial_kills_its_actors_and_the_next_trial_runs(digits, local_cluster) -> None:
    slow = MeasurementSettings(warmup_s=0.1, window_s=5, min_windows=3, max_windows=3, trial_timeout_s=2)
    runner = runner_for(digits, local_cluster, slow)
    t0 = time.perf_counter()
    with pytest.raises(TrialFailed) as exc:
        runner.run(cpu())
    assert "timed out after 2" in exc.value.reason and not exc.value.infeasible
    assert time.perf_counter() - t0 < 8
    deadline = time.monotonic() + 20
    while replica_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert replica_processes() == []                  # the Ray work was cancelled
    ok = runner_for(digits, local_cluster).run(cpu())  # cores were released
    assert ok.throughput_rps > 0


def test_a_killed_worker_fails_only_its_trial(digits, local_cluster) -> None:
    long = MeasurementSettings(warmup_s=0.1, window_s=3, min_windows=3, max_windows=3, trial_timeout_s=60)
    runner = runner_for(digits, local_cluster, long)
    result: list = []

    def run() -> None:
        try:
            result.append(runner.run(cpu()))
        except TrialFailed as exc:
            result.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while not replica_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    victims = replica_processes()
    assert victims, "no replica process found to kill"
    for p in victims:
        os.kill(p.pid, signal.SIGKILL)
    t.join(60)
    assert len(result) == 1 and isinstance(result[0], TrialFailed)
    assert "worker died" in result[0].reason and not result[0].infeasible
    assert runner_for(digits, local_cluster).run(cpu()).throughput_rps > 0  # the next trial runs


def test_resources_the_cluster_can_never_hold_are_refused_at_once(digits, local_cluster) -> None:
    t0 = time.perf_counter()
    with pytest.raises(TrialFailed) as exc:
        runner_for(digits, local_cluster).run(cpu(replicas=1, threads=os.cpu_count() + 2))
    assert exc.value.infeasible and "can never be placed" in exc.value.reason
    assert time.perf_counter() - t0 < 2  # refused, not left pending


def memory_hog(tmp: Path) -> PreparedModel:
    """Each instance expands to 128 MiB; a batch of 512 asks for 64 GiB."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    shape = numpy_helper.from_array(np.array([1, 4, 1 << 23], np.int64), "shape")
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["big"]),
         helper.make_node("ReduceSum", ["big", "axes"], ["y"], keepdims=0)],
        "hog", [x], [y], [shape, axes])
    path = tmp / "hog.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    variant = Variant("fp32", str(path), cache.sha256_file(path), 1.0)
    return PreparedModel("hog", str(path), (InputSpec("x", (4, 1), "float32"),), "fidelity", "", {"fp32": variant})


def test_out_of_memory_is_infeasible_not_a_failure(tmp_path, local_cluster) -> None:
    with pytest.raises(TrialFailed) as exc:
        runner_for(memory_hog(tmp_path), local_cluster).run(cpu(batch=512))
    assert exc.value.infeasible and "out of memory" in exc.value.reason
