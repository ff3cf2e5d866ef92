"""`tuner estimate` and the reference architectures it prices.

The end-to-end tests run the real path (prepare_model -> int8 variant -> evaluate_fpga ->
prices) on the small built-in digits-cnn; the per-device tests price exported reference
architectures through evaluate_fpga, the function an FPGA trial calls.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import onnx
import pytest
import torch

from tuner.cli.estimate import add_parser, format_record, run
from tuner.config import TrialConfig
from tuner.costmodels.fpga.bands import band_for
from tuner.costmodels.fpga.devices import load_devices
from tuner.costmodels.graph.analyze import analyze_graph
from tuner.errors import TunerError
from tuner.evaluators.fpga import evaluate_fpga
from tuner.metrics import METRIC_KEYS, ErrorBand
from tuner.models import resnet
from tuner.models.builtin import BUILTINS, fp32_path
from tuner.models.zoo.registry import ARCHITECTURES
from tuner.record import CONFIG_KEYS
from tuner.study.estimate import (
    NO_PRICE,
    EstimateOptions,
    estimate_model,
    resolve_config,
)

DEVICES = load_devices()
PUBLISHED_GOP = {**{name: a.published_gop for name, a in ARCHITECTURES.items()}, "resnet18": 3.65}
QUIET = lambda _line: None  # noqa: E731


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["estimate", *argv])


@pytest.fixture(scope="module")
def digits_u50() -> dict:
    opts = EstimateOptions(model="digits-cnn", device="u50", batch_size=3, replicas="max", all_layers=True)
    return estimate_model(opts, log=QUIET)


def test_estimate_json_has_the_show_json_keys_and_says_estimated(digits_u50: dict) -> None:
    assert tuple(digits_u50["config"]) == CONFIG_KEYS
    assert tuple(digits_u50["metrics"]) == METRIC_KEYS
    m = digits_u50["metrics"]
    assert m["estimated"] is True
    assert m["throughput_rps"] > 0 and m["latency_p50_ms"] == m["latency_p95_ms"] == m["latency_p99_ms"] > 0
    assert 0 < m["accuracy"] <= 1
    assert digits_u50["config"] == {"platform": "fpga", "batch_size": 3, "precision": "int8",
                                    "replicas": 2, "threads_per_replica": 1}
    json.dumps(digits_u50)  # JSON-ready


def test_the_estimate_carries_its_error_band_in_json_and_text(digits_u50: dict) -> None:
    band = ErrorBand.from_dict(digits_u50["metrics"]["error_band"])
    assert band == band_for("u50")  # the board's own band, as an FPGA trial records it
    text = format_record(digits_u50)
    assert f"  error band   {band.label()}: the expected error of throughput, latency and cost (est.)" in text
    assert text.index("error band") < text.index("throughput")  # right under the ESTIMATED heading


def test_an_uncalibrated_board_says_uncalibrated(digits_u50: dict) -> None:
    wide = ErrorBand(2.1, 4.3, False, 20, "boards predicted by fits that never saw them")
    record = {**digits_u50, "device": "vck5000", "metrics": {**digits_u50["metrics"], "error_band": wide.to_dict()}}
    text = format_record(record)
    assert "x2.10 typical, x4.30 worst (uncalibrated)" in text
    assert ("vck5000 has no published figures of its own: the uncalibrated band, from boards predicted by "
            "fits that never saw them") in text


def test_replicas_max_is_every_core_and_engines_are_reported(digits_u50: dict) -> None:
    est = digits_u50["estimate"]
    assert digits_u50["config"]["replicas"] == DEVICES["u50"].cores == est["cores"]
    assert est["batch_engines"] == [3, 3] and est["engines_used"] == 3
    assert est["power_w"] == 75 and est["power_unverified"] is True
    assert len(est["layers"]) >= len(est["top_layers"]) > 0  # --layers: the whole breakdown


def test_device_without_a_price_has_no_cost(digits_u50: dict) -> None:
    assert digits_u50["price"] is None and digits_u50["metrics"]["cost_usd_per_million"] is None
    text = format_record(digits_u50, layers=True)
    assert NO_PRICE in text and "(est.)" in text and "ESTIMATED" in text
    assert "per-layer breakdown" in text


def test_the_estimate_is_the_trial_code_path(digits_u50: dict) -> None:
    variant = Path(digits_u50["model"]["variant"])
    config = TrialConfig("fpga", 3, "int8", 2, 1, "u50")
    perf = evaluate_fpga(variant.read_bytes(), {"x": [1, 1, 8, 8]}, config, DEVICES["u50"])
    assert perf.throughput_rps == digits_u50["metrics"]["throughput_rps"]
    assert perf.latency_p95_ms == digits_u50["metrics"]["latency_p95_ms"]


def test_cli_prices_a_board_with_a_price_row_and_with_an_override(capsys, digits_u50) -> None:
    assert run(_parse(["--model", "digits-cnn", "--device", "aws-f1", "--batch-size", "4",
                       "--replicas", "max", "--json"])) == 0
    record = json.loads(capsys.readouterr().out)
    m = record["metrics"]
    assert tuple(m) == METRIC_KEYS and m["error_band"] == band_for("aws-f1").to_dict()
    assert record["price"]["usd_per_hour"] == 1.65 and "f1.2xlarge" in record["price"]["source"]
    assert m["cost_usd_per_million"] == pytest.approx(1.65 / (m["throughput_rps"] * 3600) * 1e6)
    assert run(_parse(["--model", "digits-cnn", "--device", "zcu104", "--batch-size", "1",
                       "--price-usd-per-hour", "0.5"])) == 0
    out = capsys.readouterr().out
    assert "$0.5/h (--price-usd-per-hour" in out and "(est.)" in out and NO_PRICE not in out


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"device": "nope"}, "Known FPGA devices"), ({"precision": "fp16"}, "int8 only"),
     ({"replicas": "3"}, "zcu104 has 2"), ({"replicas": "two"}, "or 'max'"),
     ({"batch_size": 0}, "batch-size")],
)
def test_bad_options_are_refused_naming_the_flag(changes: dict, message: str) -> None:
    opts = EstimateOptions(**{"model": "digits-cnn", "device": "zcu104", "batch_size": 1, **changes})
    with pytest.raises(TunerError, match=message):
        resolve_config(opts, DEVICES)


def test_replicas_max_resolves_per_board() -> None:
    for key, device in DEVICES.items():
        config = resolve_config(EstimateOptions("m", key, 1, "max"), DEVICES)
        assert config.replicas == device.cores and config.device == key


# --- reference architectures -------------------------------------------------------------------


def _legacy_onnx(name: str) -> bytes:
    """The architecture exported at batch 1 by torch's TorchScript exporter: the same graph as
    the dynamo export `--model` uses, in seconds rather than minutes for VGG-16 or YOLOv3."""
    module = ARCHITECTURES[name].build() if name in ARCHITECTURES else resnet.build()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, *BUILTINS[name].inputs[0].shape),), buffer,
                          dynamo=False, input_names=["x"], opset_version=17)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def analysed() -> dict[str, tuple[bytes, list]]:
    """Every reference architecture as ONNX bytes and its analysed layers."""
    out = {}
    for name in PUBLISHED_GOP:
        data = _legacy_onnx(name)
        layers = analyze_graph(onnx.load_from_string(data), {"x": [1, *BUILTINS[name].inputs[0].shape]})
        out[name] = (data, layers)
    return out


@pytest.mark.parametrize("name", sorted(PUBLISHED_GOP))
def test_reference_architecture_matches_its_published_gop(analysed, name: str) -> None:
    _, layers = analysed[name]
    gop = 2 * sum(layer.macs for layer in layers if layer.kind in ("conv", "depthwise", "gemm")) / 1e9
    assert gop == pytest.approx(PUBLISHED_GOP[name], rel=0.05)
    assert all(layer.dpu_supported for layer in layers if layer.kind != "other")


@pytest.fixture(scope="module")
def builtin_exports() -> dict[str, bytes]:
    """The fp32 ONNX that `--model NAME` uses (dynamo export, cached) of two architectures."""
    return {name: fp32_path(BUILTINS[name], QUIET).read_bytes() for name in ("squeezenet", "mobilenet_v2")}


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_every_catalog_device_prices_reference_architectures(builtin_exports, device: str) -> None:
    dev = DEVICES[device]
    for name, data in builtin_exports.items():
        shape = [1, *BUILTINS[name].inputs[0].shape]
        config = TrialConfig("fpga", max(dev.batch_engines), "int8", dev.cores, 1, device)
        perf = evaluate_fpga(data, {"x": shape}, config, dev)
        assert perf.estimated and perf.throughput_rps > 0 and perf.latency_p50_ms > 0
        # Peak is an upper bound no estimate may cross.
        assert perf.throughput_rps * perf.details["gops_per_instance"] < dev.peak_tops * 1e3


def test_squeezenet_global_pool_runs_on_the_host_where_the_window_is_too_large(builtin_exports) -> None:
    data = builtin_exports["squeezenet"]
    shapes = {"x": [1, 3, 227, 227]}
    zcu = evaluate_fpga(data, shapes, TrialConfig("fpga", 1, "int8", 1, 1, "zcu104"), DEVICES["zcu104"])
    assert len(zcu.details["host_layers"]) == 1  # 14 x 14 average pool > 8 x 8
    u200 = evaluate_fpga(data, shapes, TrialConfig("fpga", 1, "int8", 1, 1, "u200"), DEVICES["u200"])
    assert u200.details["host_layers"] == []  # DPUCADF8H pools up to 16 x 16


def test_depthwise_network_uses_less_of_the_peak_than_a_dense_one(analysed) -> None:
    def efficiency(name: str) -> float:
        data, _ = analysed[name]
        config = TrialConfig("fpga", 1, "int8", 2, 1, "zcu104")
        perf = evaluate_fpga(data, {"x": [1, *BUILTINS[name].inputs[0].shape]}, config, DEVICES["zcu104"])
        return perf.throughput_rps * perf.details["gops_per_instance"] / (DEVICES["zcu104"].peak_tops * 1e3)

    assert efficiency("mobilenet_v2") < 0.5 * efficiency("resnet50")
    assert efficiency("mobilenet_v1") < efficiency("resnet50")
