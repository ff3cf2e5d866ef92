"""The evaluator contract as pytest test classes, to subclass once per evaluator (as Optuna's
`optuna.testing.pytest_samplers` is used by its sampler tests).

    class TestCpuBench(BenchContract):
        @pytest.fixture
        def bench_factory(self): return lambda: ReplicaBench(1)
        @pytest.fixture
        def model(self): return onnx_bytes
        @pytest.fixture
        def inputs(self): return (InputSpec("x", (3, 32, 32), "float32"),)

`EstimateContract` needs the fixtures `evaluator`, `model_bytes`, `input_shapes`, `config` and
`device`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tuner.config import TrialConfig
from tuner.evaluators.base import EstimateEvaluator, thread_broadcast
from tuner.evaluators.registry import evaluator_for
from tuner.evaluators.windows import run_protocol
from tuner.models.spec import InputSpec
from tuner.spec.measurement import LoadSpec, MeasurementSettings
from tuner.testing.contract import check_bench_contract, check_estimate_contract, check_perf

#: Short windows: the contract is about behaviour, not figures.
QUICK = MeasurementSettings(warmup_s=0.05, window_s=0.1, min_windows=2, max_windows=3, target_requests=20,
                            max_measuring_s=2.0)


class BenchContract:
    """A measured platform's replica bench."""

    batch_size = 4

    def test_bench_honours_the_contract(self, bench_factory: Callable[[], Any], model: Any,
                                        inputs: tuple[InputSpec, ...]) -> None:
        passed = check_bench_contract(bench_factory(), model, inputs, batch_size=self.batch_size)
        assert len(passed) == 6

    @pytest.mark.parametrize("load", [LoadSpec(), LoadSpec(mode="server", target_rps=100.0)],
                             ids=["offline", "server"])
    def test_two_replicas_measure_through_the_protocol(self, bench_factory: Callable[[], Any], model: Any,
                                                       inputs: tuple[InputSpec, ...], load: LoadSpec) -> None:
        benches = [bench_factory(), bench_factory()]
        with ThreadPoolExecutor(max_workers=2) as pool:
            broadcast = thread_broadcast(benches, pool)
            broadcast("prepare", ("m", model, inputs, self.batch_size))
            result = run_protocol(broadcast, QUICK, load)
        check_perf(result, False, "run_protocol")
        assert result.details["mode"] == load.mode
        assert len(result.details["replicas"]) == 2
        assert result.details["windows_used"] == QUICK.min_windows


class EstimateContract:
    """A modelled platform's cost model."""

    def test_estimate_honours_the_contract(self, evaluator: EstimateEvaluator, model_bytes: bytes,
                                           input_shapes: dict[str, list[int]], config: TrialConfig,
                                           device: Any) -> None:
        passed = check_estimate_contract(evaluator, model_bytes, input_shapes, config, device)
        assert len(passed) >= 3

    def test_the_registry_finds_it_by_platform(self, evaluator: EstimateEvaluator, config: TrialConfig) -> None:
        assert evaluator_for(config.platform) is evaluator
        assert evaluator.estimated and evaluator.level == "estimate"
