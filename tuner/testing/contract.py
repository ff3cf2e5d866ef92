"""The evaluator contract as checks: what `run_protocol`, the runners and the study rely on.

Each check returns the names of the promises it verified and raises `ContractViolation` on the
first broken one. They need numpy only, so a machine without pydantic, Optuna or Ray (a GPU
image) runs them too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tuner.config import TrialConfig
from tuner.evaluators.base import EstimateEvaluator
from tuner.metrics import PerfResult
from tuner.models.spec import InputSpec


class ContractViolation(AssertionError):
    """An evaluator broke a promise of the contract."""


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ContractViolation(what)


def check_sample(sample: Any, batch: int, min_requests: int, min_elapsed_s: float, where: str) -> None:
    """A WindowSample: per-request latencies (finite, > 0, within the window), its batch size."""
    lat = getattr(sample, "latencies_s", None)
    _expect(isinstance(lat, np.ndarray) and lat.ndim == 1, f"{where}: latencies_s must be a 1-D array")
    assert isinstance(lat, np.ndarray)
    _expect(len(lat) >= min_requests, f"{where}: {len(lat)} requests, wanted >= {min_requests}")
    _expect(bool(np.all(np.isfinite(lat))) and bool(np.all(lat > 0)), f"{where}: latencies must be finite and > 0")
    _expect(sample.batch_size == batch, f"{where}: batch_size {sample.batch_size}, wanted {batch}")
    _expect(sample.elapsed_s >= min_elapsed_s, f"{where}: elapsed {sample.elapsed_s:.3f} s < {min_elapsed_s} s")
    _expect(sample.elapsed_s >= float(lat.max()) * 0.999, f"{where}: a latency exceeds the window")
    _expect(sample.throughput_rps > 0, f"{where}: throughput must be > 0")


def check_bench_contract(bench: Any, model: Any, inputs: tuple[InputSpec, ...], batch_size: int = 4,
                         seconds: float = 0.2, key: str = "contract") -> list[str]:
    """One replica bench (`tuner.evaluators.base.Bench`) against the contract.

    Args:
        bench: a fresh bench (nothing prepared yet).
        model: what its `prepare` takes (ONNX bytes, a path, a TorchSource...).
        inputs: the model's inputs, batch dimension excluded.
        batch_size: the batch to time (then 1, to check that prepare switches it).
        seconds: the length of each timed window.
        key: the cache key to prepare under.
    """
    passed = []
    _expect(bench.prepare(key, model, inputs, batch_size) is False, "first prepare must return False (not cached)")
    _expect(bench.prepare(key, model, inputs, batch_size) is True, "second prepare must return True (cached)")
    passed.append("prepare caches by key")
    info = bench.info()
    _expect(isinstance(info, dict) and "pid" in info and "node" in info, "info() must be a dict with pid and node")
    json.dumps(info, default=str)
    passed.append("info is a dict")
    sample = bench.run_for(seconds, 3)
    check_sample(sample, batch_size, 3, seconds, "run_for")
    busy = float(sample.latencies_s.sum())
    _expect(busy <= sample.elapsed_s * 1.05, f"run_for: calls took {busy:.3f} s in a {sample.elapsed_s:.3f} s window")
    _expect(busy >= sample.elapsed_s * 0.5, f"run_for: calls fill only {busy / sample.elapsed_s:.0%} of the window")
    passed.append("run_for: back-to-back calls, latencies within the window")
    check_sample(bench.run_for(0.0, 5), batch_size, 5, 0.0, "run_for(min_calls)")
    passed.append("run_for honours min_calls")
    rate = 4.0 / seconds * 10  # about 40 requests per window: enough, and far below capacity
    served = bench.serve_for(seconds, rate, 0.002, 7)
    check_sample(served, 1, 1, seconds * 0.99, "serve_for")
    again = bench.serve_for(seconds, rate, 0.002, 7)
    _expect(len(again.latencies_s) == len(served.latencies_s), "serve_for: the same seed must give the same arrivals")
    passed.append("serve_for: seeded Poisson arrivals, per-request latencies")
    bench.prepare(key, model, inputs, 1)
    check_sample(bench.run_for(0.0, 2), 1, 2, 0.0, "run_for after re-prepare at batch 1")
    passed.append("prepare switches the batch size")
    return passed


def check_oom(make_bench: Callable[[], Any], model: Any, inputs: tuple[InputSpec, ...], huge_batch: int,
              key: str = "oom") -> list[str]:
    """An out-of-memory batch must raise an error saying "out of memory" (the runners' mark of an
    infeasible config), and the replica must work again at batch 1 afterwards."""
    bench = make_bench()
    try:
        bench.prepare(key, model, inputs, huge_batch)
    except Exception as exc:  # noqa: BLE001 - the contract is about the message, whatever the type
        _expect("out of memory" in str(exc), f"batch {huge_batch} failed without 'out of memory': {exc!r}"[:400])
    else:
        raise ContractViolation(f"batch {huge_batch} fitted in memory: the out-of-memory path was not exercised")
    bench.prepare(key, model, inputs, 1)
    check_sample(bench.run_for(0.0, 2), 1, 2, 0.0, "run_for after out of memory")
    return ["out-of-memory batch reported as 'out of memory'", "replica recovers at batch 1"]


def check_perf(result: Any, estimated: bool, where: str) -> None:
    """A PerfResult: positive finite throughput, ordered percentiles, the estimated flag."""
    _expect(isinstance(result, PerfResult), f"{where}: must return a PerfResult, got {type(result).__name__}")
    _expect(result.estimated is estimated, f"{where}: estimated is {result.estimated}, must be {estimated}")
    _expect(math.isfinite(result.throughput_rps) and result.throughput_rps > 0, f"{where}: throughput must be > 0")
    _expect(0 < result.latency_p50_ms <= result.latency_p95_ms <= result.latency_p99_ms,
            f"{where}: latencies must satisfy 0 < p50 <= p95 <= p99, got "
            f"{result.latency_p50_ms}, {result.latency_p95_ms}, {result.latency_p99_ms}")
    json.dumps(result.details, default=str)


def check_estimate_contract(evaluator: EstimateEvaluator, model_bytes: bytes, input_shapes: dict[str, list[int]],
                            config: TrialConfig, device: Any) -> list[str]:
    """A cost model against the contract: estimated, deterministic, more replicas never slower,
    and a configuration of another platform refused with a message naming the field."""
    passed = []
    first = evaluator.estimate(model_bytes, input_shapes, config, device)
    check_perf(first, True, "estimate")
    passed.append("an estimate is labelled estimated, with ordered latencies")
    again = evaluator.estimate(model_bytes, input_shapes, config, device)
    _expect(again.throughput_rps == first.throughput_rps and again.latency_p95_ms == first.latency_p95_ms,
            "estimate: the same configuration must give the same figures")
    passed.append("estimates are deterministic")
    if config.replicas > 1:
        fewer = evaluator.estimate(model_bytes, input_shapes,
                                   TrialConfig(config.platform, config.batch_size, config.precision, 1,
                                               config.threads_per_replica, config.device), device)
        _expect(first.throughput_rps >= fewer.throughput_rps * 0.999,
                f"estimate: {config.replicas} replicas ({first.throughput_rps:.1f}/s) slower than 1 "
                f"({fewer.throughput_rps:.1f}/s)")
        passed.append("more replicas are never slower")
    other = "cpu" if config.platform != "cpu" else "fpga"
    try:
        evaluator.estimate(model_bytes, input_shapes, TrialConfig(other, config.batch_size, config.precision,
                                                                   1, 1, config.device), device)
    except Exception as exc:  # noqa: BLE001 - the contract is about the message
        _expect("platform" in str(exc), f"estimate: a {other} config was refused without naming the platform: {exc}")
    else:
        raise ContractViolation(f"estimate: a {other} configuration was priced by the {config.platform} model")
    passed.append("another platform's configuration is refused, naming the platform")
    return passed
