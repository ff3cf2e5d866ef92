"""The contract checks of experiments/gpu_check.py, proven here: the CPU ReplicaBench and the GPU
bench's code path (on CPU tensors) pass them, broken benches fail them, and the script itself
runs end to end in its CPU dry-run mode and exits 2 with a message where there is no CUDA."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from test_gpu_evaluator import DIGITS_INPUTS, OomAbove, cpu_bench, digits_source
from test_gpu_whatif import tiny_cnn
from tuner.evaluators.cpu import ReplicaBench
from tuner.evaluators.gpu.bench import GpuReplicaBench
from tuner.evaluators.gpu.select import RuntimeFacts
from tuner.models.spec import InputSpec

ROOT = Path(__file__).resolve().parents[1]
TINY_INPUTS = (InputSpec("x", (3, 32, 32), "float32"),)


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "experiments" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()


def test_cpu_replica_bench_honours_the_contract():
    passed = gpu_check.check_contract(ReplicaBench(1), tiny_cnn(), TINY_INPUTS, batch_size=4)
    assert len(passed) == 6


def test_gpu_bench_code_path_honours_the_contract_on_cpu_tensors():
    passed = gpu_check.check_contract(cpu_bench("fp32"), digits_source()[0], DIGITS_INPUTS, batch_size=4)
    assert len(passed) == 6


class Broken:
    """Wraps a good bench and breaks one promise."""

    def __init__(self, inner, flaw: str) -> None:
        self.inner, self.flaw = inner, flaw

    def prepare(self, *args):
        cached = self.inner.prepare(*args)
        return False if self.flaw == "never cached" else cached

    def info(self):
        return self.inner.info()

    def run_for(self, seconds, min_calls):
        sample = self.inner.run_for(seconds, 0 if self.flaw == "ignores min_calls" else min_calls)
        if self.flaw == "wrong batch":
            return replace(sample, batch_size=sample.batch_size + 1)
        if self.flaw == "latency beyond window":
            return replace(sample, latencies_s=sample.latencies_s * 50)
        return sample

    def serve_for(self, *args):
        return self.inner.serve_for(*args)


@pytest.mark.parametrize(("flaw", "words"), [
    ("never cached", "second prepare"),
    ("wrong batch", "batch_size"),
    ("ignores min_calls", "requests, wanted >= 5"),
    ("latency beyond window", "exceeds the window|calls took"),
])
def test_a_broken_bench_fails_the_contract(flaw, words):
    with pytest.raises(gpu_check.ContractViolation, match=words):
        gpu_check.check_contract(Broken(ReplicaBench(1), flaw), tiny_cnn(), TINY_INPUTS, batch_size=4)


def test_oom_check_passes_a_bench_that_reports_out_of_memory():
    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
    passed = gpu_check.check_oom(lambda: GpuReplicaBench._on_runner(OomAbove(64, error), "torch", "fp32"),
                                 digits_source()[0], DIGITS_INPUTS, 1024)
    assert passed == ["out-of-memory batch reported as 'out of memory'", "replica recovers at batch 1"]


@pytest.mark.parametrize(("runner", "words"), [
    (lambda: OomAbove(10**9, RuntimeError("unused")), "not exercised"),
    (lambda: OomAbove(64, RuntimeError("device lost")), "without 'out of memory'"),
])
def test_oom_check_fails_a_bench_that_does_not(runner, words):
    with pytest.raises(gpu_check.ContractViolation, match=words):
        gpu_check.check_oom(lambda: GpuReplicaBench._on_runner(runner(), "torch", "fp32"),
                            digits_source()[0], DIGITS_INPUTS, 1024)


def test_script_exits_2_with_a_message_without_cuda(monkeypatch, capsys):
    import tuner.evaluators.gpu.select as select

    monkeypatch.setattr(select, "detect_runtime", lambda: RuntimeFacts("1.32.0", ("CPUExecutionProvider",), "2.13.0"))
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "no CUDA here" in err and "onnxruntime-gpu" in err


# Runs the script as the GPU machine would: a fresh process where Ray, pydantic and optuna
# cannot be imported (the GPU image has none of them).
_BARE_PYTHON = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "pydantic", "optuna"}:
            raise ModuleNotFoundError("blocked on purpose: " + name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.integration
def test_script_dry_run_without_ray_or_pydantic_writes_its_table_csv_and_json(tmp_path):
    import subprocess

    args = ["--dry-run-cpu", "--quick", "--models", "digits-cnn", "--precisions", "fp32", "fp16",
            "--backends", "torch", "--device-key", "h100", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", _BARE_PYTHON, str(ROOT / "experiments" / "gpu_check.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "throughput_rps" in done.stdout and "wrote" in done.stdout  # the table was printed
    with open(tmp_path / "gpu_check.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["precision"], int(r["batch_size"])) for r in rows] == [
        ("fp16", 1), ("fp16", 16), ("fp16", 256), ("fp32", 1), ("fp32", 16), ("fp32", 256)]
    assert all(r["status"] == "ok" and float(r["throughput_rps"]) > 0 for r in rows)
    assert all(0 < float(r["fraction_of_peak"]) < 1 for r in rows)
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert len(summary["contract"]["torch"]) == 6
    assert summary["catalog_device"] == "h100" and summary["peaks"]["fp16"] == 989.4
    assert summary["weights"]["digits-cnn"].startswith("trained")
    assert summary["gflops_per_instance"]["digits-cnn"] > 0
    assert set(summary["calibration"]) <= {"fp32", "fp16"}
