"""The evaluator contract (tuner/testing) run over every evaluator: the CPU bench, the GPU bench's
code path on CPU tensors, and the FPGA cost model; and the contract's checks catch benches that
break a promise."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tuner.config import TrialConfig
from tuner.costmodels.fpga.devices import load_devices
from tuner.evaluators.base import ReplicaEvaluator
from tuner.evaluators.cpu import CPU, ReplicaBench
from tuner.evaluators.fpga import FPGA
from tuner.evaluators.gpu import detect_gpu_setup
from tuner.evaluators.gpu_bench import GpuReplicaBench
from tuner.evaluators.gpu_select import detect_runtime
from tuner.evaluators.registry import EVALUATORS, FROM_SETUP, evaluator_for
from tuner.models.spec import InputSpec
from tuner.testing.contract import ContractViolation, check_bench_contract, check_oom
from tuner.testing.pytest_evaluators import BenchContract, EstimateContract

from helpers import DIGITS_INPUTS, OomAbove, cpu_bench, digits_source, tiny_cnn

TINY_INPUTS = (InputSpec("x", (3, 32, 32), "float32"),)


class TestCpuBench(BenchContract):
    @pytest.fixture
    def bench_factory(self):
        return lambda: CPU.make_bench(TrialConfig("cpu", 4, "fp32", 1, 1), None)

    @pytest.fixture
    def model(self):
        return tiny_cnn()

    @pytest.fixture
    def inputs(self):
        return TINY_INPUTS


class TestGpuBenchOnCpuTensors(BenchContract):
    @pytest.fixture
    def bench_factory(self):
        return lambda: cpu_bench("fp32")

    @pytest.fixture
    def model(self):
        return digits_source()[0]

    @pytest.fixture
    def inputs(self):
        return DIGITS_INPUTS


class TestFpgaCostModel(EstimateContract):
    @pytest.fixture
    def evaluator(self):
        return FPGA

    @pytest.fixture
    def model_bytes(self):
        return tiny_cnn()

    @pytest.fixture
    def input_shapes(self):
        return {"x": [1, 3, 32, 32]}

    @pytest.fixture
    def config(self):
        return TrialConfig("fpga", 4, "int8", 2, 1, "zcu104")

    @pytest.fixture
    def device(self):
        return load_devices()["zcu104"]


def test_the_registry_builds_gpu_from_the_clusters_setup_and_has_none_without_one():
    assert set(EVALUATORS) == {"cpu", "fpga"} and set(FROM_SETUP) == {"gpu"}
    assert evaluator_for("cpu") is CPU and not CPU.estimated and CPU.level == "engine"
    assert evaluator_for("gpu") is None and evaluator_for("gpu", "served") is None
    setup, _note = detect_gpu_setup(2, detect_runtime(), "test-cpu")
    assert setup is not None
    gpu = evaluator_for("gpu", "engine", setup)
    assert isinstance(gpu, ReplicaEvaluator) and gpu.platform == "gpu" and not gpu.estimated
    config = TrialConfig("gpu", 8, "fp32", 3)  # 3 replicas on 2 GPUs: 2 share one, so each holds half
    assert gpu.actor_resources(config) == {"num_gpus": 0.5} and gpu.cores_per_replica(config) == 1
    assert gpu.refuses(config) is None and "bf16" in (gpu.refuses(replace(config, precision="bf16")) or "")
    assert gpu.bench_key(config) != gpu.bench_key(replace(config, replicas=1))  # another GPU share
    assert evaluator_for("gpu", "served", setup).platform == "gpu"


class TestGpuEvaluatorOfTheTestBackend(BenchContract):
    """The bench `tuner tune --gpu-backend test-cpu` builds, through the gpu evaluator."""

    @pytest.fixture
    def bench_factory(self):
        setup, _note = detect_gpu_setup(1, detect_runtime(), "test-cpu")
        assert setup is not None
        gpu = evaluator_for("gpu", "engine", setup)
        assert isinstance(gpu, ReplicaEvaluator)
        return lambda: gpu.make_bench(TrialConfig("gpu", 4, "fp32", 1), None)

    @pytest.fixture
    def model(self):
        return tiny_cnn()

    @pytest.fixture
    def inputs(self):
        return TINY_INPUTS


def test_cpu_replicas_get_their_threads_as_cores():
    assert CPU.cores_per_replica(TrialConfig("cpu", 8, "int8", 2, 3)) == 3


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
    with pytest.raises(ContractViolation, match=words):
        check_bench_contract(Broken(ReplicaBench(1), flaw), tiny_cnn(), TINY_INPUTS, batch_size=4)


def test_oom_check_passes_a_bench_that_reports_out_of_memory():
    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
    passed = check_oom(lambda: GpuReplicaBench._on_runner(OomAbove(64, error), "torch", "fp32"),
                       digits_source()[0], DIGITS_INPUTS, 1024)
    assert passed == ["out-of-memory batch reported as 'out of memory'", "replica recovers at batch 1"]


@pytest.mark.parametrize(("runner", "words"), [
    (lambda: OomAbove(10**9, RuntimeError("unused")), "not exercised"),
    (lambda: OomAbove(64, RuntimeError("device lost")), "without 'out of memory'"),
])
def test_oom_check_fails_a_bench_that_does_not(runner, words):
    with pytest.raises(ContractViolation, match=words):
        check_oom(lambda: GpuReplicaBench._on_runner(runner(), "torch", "fp32"), digits_source()[0], DIGITS_INPUTS, 1024)


def test_an_estimator_that_prices_another_platform_fails_the_contract():
    from tuner.evaluators.base import EstimateEvaluator
    from tuner.evaluators.fpga import evaluate_fpga
    from tuner.testing.contract import check_estimate_contract

    def lenient(model_bytes, shapes, config, device):
        return evaluate_fpga(model_bytes, shapes, replace(config, platform="fpga"), device)

    with pytest.raises(ContractViolation, match="priced by the fpga model"):
        check_estimate_contract(EstimateEvaluator("fpga", lenient), tiny_cnn(), {"x": [1, 3, 32, 32]},
                                TrialConfig("fpga", 4, "int8", 2, 1, "zcu104"), load_devices()["zcu104"])
