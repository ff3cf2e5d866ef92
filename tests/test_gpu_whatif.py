"""The GPU catalog (every figure sourced, values as in hardware.md section E) and the what-if
roofline: monotonic in batch, labelled estimated, refusing what a card cannot do, and a
calibration fit that recovers known factors from synthetic rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from tuner.costmodels.gpu.devices import (
    BUILTIN_CATALOG,
    load_calibration,
    load_gpu_devices,
    match_device,
)
from tuner.costmodels.gpu.whatif import (
    UNCALIBRATED_COMPUTE_EFFICIENCY,
    CalibrationSample,
    estimate_gpu,
    fit_calibration,
    roofline,
)
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import TunerError
from tuner.prices import load_prices

from helpers import tiny_cnn

ISSUE_CARDS = ("t4", "l4", "a10g", "a100", "h100")
# hardware.md section E: FP32, FP16 tensor dense, INT8 dense, memory GB/s.
HARDWARE_MD_E = {
    "t4": (8.1, 65, 130, 320),
    "l4": (30.3, 121, 242.5, 300),
    "a10g": (31.2, 125, 250, 600),
    "a100": (19.5, 312, 624, 1555),
    "h100": (66.9, 989.4, 1978.9, 3350),
}


SHAPES = {"x": [1, 3, 32, 32]}


def test_catalog_holds_the_issue_cards_with_every_figure_sourced():
    devices = load_gpu_devices()
    assert set(ISSUE_CARDS) <= set(devices)
    for device in devices.values():
        assert set(device.sources) >= {"fp32_tflops", "fp16_tflops", "memory_bandwidth_gbps", "memory_gb"}
        assert all(len(s) > 10 for s in device.sources.values())
        assert device.unverified <= set(device.sources)


@pytest.mark.parametrize("key", ISSUE_CARDS)
def test_catalog_figures_match_hardware_md(key):
    device = load_gpu_devices()[key]
    fp32, fp16, int8, bandwidth = HARDWARE_MD_E[key]
    assert (device.peak_for("fp32"), device.peak_for("fp16"), device.peak_for("int8")) == (fp32, fp16, int8)
    assert device.memory_bandwidth_gbps == bandwidth
    assert "hardware.md E" in device.sources["fp32_tflops"] or "hardware.md" in device.sources["fp32_tflops"]


def test_unverified_figures_are_marked():
    devices = load_gpu_devices()
    assert {"fp16_tflops", "bf16_tflops", "int8_tops"} <= devices["a10g"].unverified
    assert "memory_bandwidth_gbps" in devices["h200"].unverified
    assert "memory_bandwidth_gbps" not in devices["h100"].unverified


def test_every_issue_card_has_a_price_row():
    prices = load_prices()
    for key in ISSUE_CARDS:
        assert load_gpu_devices()[key].price_key in prices.rows


def test_card_names_match_catalog_rows():
    devices = load_gpu_devices()
    assert match_device("NVIDIA H100 80GB HBM3", devices).key == "h100"
    assert match_device("Tesla T4", devices).key == "t4"
    assert match_device("NVIDIA A100-SXM4-40GB", devices).key == "a100"
    assert match_device("NVIDIA H200", devices).key == "h200"
    assert match_device("NVIDIA L40S", devices) is None  # not an L4
    assert match_device("NVIDIA H100 PCIe", devices) is None  # other memory and peaks than the SXM5


def _write_catalog(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(BUILTIN_CATALOG.read_text())
    mutate(data)
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["devices"]["t4"]["fp32_tflops"].pop("source"), "devices.t4.fp32_tflops.source"),
        (lambda d: d["devices"]["t4"]["memory_gb"].update(value=-1), "devices.t4.memory_gb.value"),
        (lambda d: d["devices"]["t4"]["fp32_tflops"].update(value=None), "positive number."),
        (lambda d: d["devices"]["t4"].update(colour="green"), "devices.t4"),
        (lambda d: d["devices"]["t4"].update(price_key="t4"), "gpu.<name>"),
    ],
)
def test_catalog_errors_name_the_field(tmp_path, mutate, words):
    with pytest.raises(TunerError, match="Got") as err:
        load_gpu_devices(_write_catalog(tmp_path, mutate))
    assert words in str(err.value)


def test_a_card_without_bf16_refuses_it():
    with pytest.raises(TunerError, match="no bf16 tensor path"):
        estimate_gpu(tiny_cnn(), SHAPES, "t4", "bf16", 1, 1)


def test_estimate_is_labelled_estimated_and_uncalibrated():
    result = estimate_gpu(tiny_cnn(), SHAPES, "t4", "fp16", 8, 1, calibration={})
    assert result.estimated is True and result.details["estimated"] is True
    assert result.details["calibrated"] is False
    assert "not calibrated yet" in result.details["calibration"]
    assert result.details["compute_efficiency"] == UNCALIBRATED_COMPUTE_EFFICIENCY["fp16"]
    assert result.latency_p50_ms == result.latency_p95_ms == result.latency_p99_ms > 0
    assert result.details["price_key"] == "gpu.t4"


@pytest.mark.parametrize("key", ISSUE_CARDS)
def test_roofline_is_monotonic_in_batch(key):
    lat, tput = [], []
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        r = estimate_gpu(tiny_cnn(), SHAPES, key, "fp16", batch, 1, calibration={})
        lat.append(r.latency_p50_ms)
        tput.append(r.throughput_rps)
    assert all(b >= a for a, b in zip(lat, lat[1:]))
    assert all(b >= a for a, b in zip(tput, tput[1:]))
    assert tput[-1] > 5 * tput[0]  # batching pays off against the per-call overhead


def test_faster_card_lower_precision_and_more_replicas_go_faster():
    model = tiny_cnn(channels=256, size=64)
    shapes = {"x": [1, 3, 64, 64]}
    t4 = estimate_gpu(model, shapes, "t4", "fp32", 64, 1, calibration={})
    h100 = estimate_gpu(model, shapes, "h100", "fp32", 64, 1, calibration={})
    t4_fp16 = estimate_gpu(model, shapes, "t4", "fp16", 64, 1, calibration={})
    two = estimate_gpu(model, shapes, "t4", "fp32", 64, 2, calibration={})
    assert h100.latency_p50_ms < t4.latency_p50_ms
    assert t4_fp16.latency_p50_ms < t4.latency_p50_ms
    assert two.throughput_rps == pytest.approx(2 * t4.throughput_rps)
    assert two.latency_p50_ms == t4.latency_p50_ms


def test_a_batch_beyond_the_cards_memory_is_out_of_memory():
    with pytest.raises(TunerError, match="out of memory"):
        estimate_gpu(tiny_cnn(channels=64, size=224), {"x": [1, 3, 224, 224]}, "t4", "fp32", 65536, 1)


def test_unknown_device_is_refused_with_the_catalog():
    with pytest.raises(TunerError, match="'v100' for device"):
        estimate_gpu(tiny_cnn(), SHAPES, "v100", "fp32", 1, 1)


def _resnetish_layers() -> tuple[LayerCost, ...]:
    """Layers of mixed intensity: a few compute-bound convolutions, a memory-bound fc."""
    convs = [LayerCost(f"conv{i}", "Conv", "conv", 100_000_000 * (i + 1), 600_000, 800_000, 800_000, True)
             for i in range(6)]
    fc = LayerCost("fc", "Gemm", "gemm", 512_000, 512_000, 512, 1000, True, graph_output_bytes=1000)
    first = dataclasses.replace(convs[0], graph_input_bytes=150_528)
    return (first, *convs[1:], fc)


@pytest.mark.parametrize(("precision", "eff", "overhead"), [("fp16", 0.37, 0.08), ("fp32", 0.72, 0.02)])
def test_calibration_fit_recovers_known_factors(precision, eff, overhead):
    device = load_gpu_devices()["h100"]
    layers = _resnetish_layers()
    samples = [CalibrationSample(layers, b, roofline(layers, device, precision, b, eff, overhead).latency_ms)
               for b in (1, 4, 16, 64, 256)]
    fit = fit_calibration(samples, device, precision, "synthetic", "test")
    assert fit.calibration.compute_efficiency == pytest.approx(eff, rel=1e-3)
    assert fit.calibration.call_overhead_ms == pytest.approx(overhead, rel=1e-2, abs=1e-4)
    assert fit.rel_rmse < 1e-3


def test_calibration_fit_tolerates_noise():
    device = load_gpu_devices()["a100"]
    layers = _resnetish_layers()
    rng = np.random.default_rng(1)
    samples = [CalibrationSample(layers, b, roofline(layers, device, "fp16", b, 0.3, 0.05).latency_ms
                                 * (1 + rng.normal(0, 0.02)))
               for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    fit = fit_calibration(samples, device, "fp16", "synthetic", "test")
    assert fit.calibration.compute_efficiency == pytest.approx(0.3, rel=0.1)


def test_calibration_refuses_rows_that_say_nothing_about_compute():
    device = load_gpu_devices()["h100"]
    tiny = (LayerCost("fc", "Gemm", "gemm", 1000, 10_000_000, 100, 100, True),)
    samples = [CalibrationSample(tiny, b, roofline(tiny, device, "fp16", b, 0.5, 0.05).latency_ms) for b in (1, 2, 4)]
    with pytest.raises(TunerError, match="memory- or overhead-bound"):
        fit_calibration(samples, device, "fp16", "synthetic", "test")
    with pytest.raises(TunerError, match="at least 3"):
        fit_calibration(samples[:2], device, "fp16", "synthetic", "test")


def test_a_catalog_calibration_is_used_and_reported(tmp_path):
    def add(d):
        d["calibration"] = {"fp16": {"compute_efficiency": 0.05, "call_overhead_ms": 0.5,
                                     "measured_on": "NVIDIA H100 80GB HBM3", "source": "gpu_check 2026-11"}}

    calibration = load_calibration(_write_catalog(tmp_path, add))
    model = tiny_cnn(channels=128, size=64)
    shapes = {"x": [1, 3, 64, 64]}
    plain = estimate_gpu(model, shapes, "l4", "fp16", 64, 1, calibration={})
    fitted = estimate_gpu(model, shapes, "l4", "fp16", 64, 1, calibration=calibration)
    assert fitted.details["calibrated"] is True
    assert fitted.details["calibration"]["measured_on"] == "NVIDIA H100 80GB HBM3"
    assert fitted.estimated is True
    assert fitted.latency_p50_ms > plain.latency_p50_ms  # lower efficiency, higher overhead


def test_a_malformed_calibration_is_refused(tmp_path):
    def add(d):
        d["calibration"] = {"fp16": {"compute_efficiency": 2.0, "call_overhead_ms": 0.1,
                                     "measured_on": "x", "source": "y"}}

    with pytest.raises(TunerError, match="compute_efficiency must be in"):
        load_calibration(_write_catalog(tmp_path, add))


def test_shipped_catalog_is_uncalibrated_until_a_gpu_is_measured():
    assert load_calibration() == {}
    assert onnx.load_from_string(tiny_cnn()).graph.node[0].op_type == "Conv"
