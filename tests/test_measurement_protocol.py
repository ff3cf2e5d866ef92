"""The measurement protocol on real ONNX Runtime sessions (no Ray): sizing, confidence
intervals, offline and server load."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.evaluators.cpu import measure_local
from tuner.evaluators.windows import percentile_ci_ms, window_length_s
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.spec.measurement import LoadSpec, MeasurementSettings

FAST = MeasurementSettings(warmup_s=0.1, window_s=0.3, min_windows=2, max_windows=3, target_requests=200,
                           max_measuring_s=3)


@pytest.fixture(scope="module")
def digits():
    return prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)


def test_percentile_ci_brackets_the_quantile_and_narrows_with_more_requests() -> None:
    rng = np.random.default_rng(0)
    small = np.sort(rng.exponential(0.01, 200))
    large = np.sort(rng.exponential(0.01, 20000))
    true_p95_ms = -np.log(0.05) * 10.0
    lo, hi = percentile_ci_ms(large, 0.95)
    assert lo <= true_p95_ms <= hi
    s_lo, s_hi = percentile_ci_ms(small, 0.95)
    assert (hi - lo) < (s_hi - s_lo)


def test_windows_are_sized_for_the_target_requests_within_the_cap() -> None:
    s = MeasurementSettings(window_s=2, min_windows=3, target_requests=3000, max_measuring_s=30)
    assert window_length_s(s, 100000) == 2            # fast: the shortest window holds plenty
    assert window_length_s(s, 100) == 10              # 3000 requests / (3 x 100/s)
    assert window_length_s(s, 1) == 10                # slow: capped at max_measuring_s / min_windows


def test_offline_measurement_reports_windows_requests_and_intervals(digits) -> None:
    r = measure_local(digits.variants["fp32"].path, digits.inputs, 8, 1, 1, FAST)
    d = r.details
    assert r.throughput_rps > 0 and not r.estimated
    assert d["mode"] == "offline" and d["windows_used"] == 2 and 2 <= d["windows"] <= 3
    assert d["requests"] >= 200
    lo, hi = d["latency_p95_ci_ms"]
    assert lo <= r.latency_p95_ms <= hi
    assert r.latency_p50_ms <= r.latency_p95_ms <= r.latency_p99_ms


def test_server_mode_latency_includes_the_batching_wait(digits) -> None:
    """At 40 requests/s a batch of 8 never fills: each waits the 20 ms timeout."""
    offline = measure_local(digits.variants["fp32"].path, digits.inputs, 8, 1, 1, FAST)
    load = LoadSpec(mode="server", target_rps=40, batch_wait_timeout_s=0.02)
    server = measure_local(digits.variants["fp32"].path, digits.inputs, 8, 1, 1, FAST, load)
    assert server.details["mode"] == "server" and server.details["target_rps"] == 40
    assert server.latency_p95_ms > 10.0 > offline.latency_p95_ms
    assert server.throughput_rps == pytest.approx(40, rel=0.5)  # completions follow the arrivals


def test_server_mode_beyond_capacity_completes_less_than_offered(digits) -> None:
    offline = measure_local(digits.variants["fp32"].path, digits.inputs, 1, 1, 1, FAST)
    offered = 20 * offline.throughput_rps
    load = LoadSpec(mode="server", target_rps=offered, batch_wait_timeout_s=0.0)
    server = measure_local(digits.variants["fp32"].path, digits.inputs, 1, 1, 1, FAST, load)
    assert server.throughput_rps < 0.5 * offered
    assert server.latency_p95_ms > 5 * offline.latency_p95_ms  # queueing shows in latency
