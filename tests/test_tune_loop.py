"""The study loop through the real CLI: out of memory is infeasible and never retried; with
--parallel 2 no configuration is measured twice; finalists are re-measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import tuner

pytestmark = pytest.mark.integration



def show(workdir: Path, study: str) -> dict:
    out = tuner(workdir, "show", "--study", study, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def write_hog(path: Path, hidden: bool = False) -> None:
    """64 MiB per instance: a batch of 1024 asks for 64 GiB. `hidden`: the size comes from the
    data at run time (0 x min(x) + 2^22), so shape inference, and tuner's memory prediction,
    cannot see it: the kernel's out-of-memory path is what stops it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    if not hidden:
        inits = [numpy_helper.from_array(np.array([1, 4, 1 << 22], np.int64), "shape"), axes]
        nodes = []
    else:
        inits = [axes, numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                 numpy_helper.from_array(np.array(1 << 22, np.int64), "n"),
                 numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                 numpy_helper.from_array(np.array([1, 4], np.int64), "head")]
        nodes = [helper.make_node("ReduceMin", ["x"], ["m"], keepdims=0),
                 helper.make_node("Mul", ["m", "zero"], ["z"]),
                 helper.make_node("Cast", ["z"], ["zi"], to=TensorProto.INT64),
                 helper.make_node("Add", ["zi", "n"], ["size"]),
                 helper.make_node("Unsqueeze", ["size", "axis0"], ["size1"]),
                 helper.make_node("Concat", ["head", "size1"], ["shape"], axis=0)]
    graph = helper.make_graph(
        [*nodes, helper.make_node("Expand", ["x", "shape"], ["big"]),
         helper.make_node("ReduceSum", ["big", "axes"], ["y"], keepdims=0)],
        "hog", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


HOG_SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32]}
    batch_size: {type: int, low: 1024, high: 1024, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measure: engine  # the study loop is under test here, not the serving stack
measurement: {warmup_s: 0.1, window_s: 0.3, min_windows: 2, max_windows: 2, target_requests: 10}
"""


def test_out_of_memory_is_recorded_infeasible_and_not_retried(tmp_path: Path) -> None:
    write_hog(tmp_path / "hog.onnx", hidden=True)
    (tmp_path / "space.yaml").write_text(HOG_SPACE)
    out = tuner(tmp_path, "tune", "--model", "hog.onnx", "--trials", "3", "--space", "space.yaml", "--finalists", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    trials = show(tmp_path, "hog")["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    assert all(t["metrics"] is None and not t["feasible"] for t in trials)
    assert "out of memory" in trials[0]["failure"]
    assert [t["reused_from"] for t in trials] == [None, 0, 0]  # tried once, never again
    assert "1 not runnable" in out.stdout


def test_memory_the_graph_predicts_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """The same 64 GiB, visible in the graph: recorded infeasible with the prediction, never run."""
    write_hog(tmp_path / "hog.onnx")
    (tmp_path / "space.yaml").write_text(HOG_SPACE + "constraints: {trial_memory_gib_max: 100000}\n")
    out = tuner(tmp_path, "tune", "--model", "hog.onnx", "--trials", "2", "--space", "space.yaml", "--finalists", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    trials = show(tmp_path, "hog")["trials"]
    assert all(t["metrics"] is None and not t["feasible"] for t in trials)
    assert "predicted memory" in trials[0]["failure"] and "exceeds the largest node" in trials[0]["failure"]
    assert [t["reused_from"] for t in trials] == [None, 0]
    (tmp_path / "space.yaml").write_text(HOG_SPACE)  # the default budget: a quarter of the cluster's memory
    out = tuner(tmp_path, "tune", "--model", "hog.onnx", "--trials", "1", "--study", "hog2", "--space", "space.yaml")
    assert out.returncode == 2 and "even batch 1024 is predicted to exceed the trial memory budget" in out.stdout


def test_parallel_trials_without_double_work_and_finalists(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text("""
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, int8]}
    batch_size: {type: int, low: 1, high: 4, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measure: engine  # the study loop is under test here, not the serving stack
measurement: {warmup_s: 0.1, window_s: 0.3, min_windows: 2, max_windows: 3, target_requests: 100}
""")
    out = tuner(tmp_path, "tune", "--trials", "9", "--space", "space.yaml", "--parallel", "2",
                "--finalists", "2", "--finalist-repeats", "2", "--seed", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "with 2 in parallel" in out.stdout and "peak memory" in out.stdout
    trials = show(tmp_path, "digits-cnn")["trials"]
    assert sum(t["state"] == "COMPLETE" for t in trials) == 9
    measured = [t for t in trials if t["metrics"] and t["reused_from"] is None]
    keys = [(t["config"]["precision"], t["config"]["batch_size"]) for t in measured]
    assert len(keys) == len(set(keys)) <= 6        # 6 configurations exist; none measured twice
    assert len(measured) + sum(t["reused_from"] is not None for t in trials) == 9
    finalists = [t for t in trials if t["remeasured"]]
    assert 1 <= len(finalists) <= 2
    for t in finalists:
        # Finalists are re-measured served; the engine-level first measurement is not in that median.
        assert t["level"] == "served" and t["remeasured"]["samples"] == 2
        lo, hi = t["remeasured"]["spread"]["throughput_rps"]
        assert lo <= t["metrics"]["throughput_rps"] <= hi
