"""Calibration of the DPU model: the data, the baseline to beat, the fit, the parameter file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuner.costmodels.fpga import calibration as cal
from tuner.costmodels.fpga.devices import load_devices
from tuner.costmodels.fpga.params import (
    PARAMS_FILE,
    DpuParams,
    load_params,
    save_params,
)
from tuner.costmodels.graph import LayerCost
from tuner.errors import TunerError
from tuner.models.builtin import BUILTINS

DEVICES = load_devices()
CSV = cal.DEFAULT_CSV


def test_every_calibration_row_maps_to_a_board_and_a_reference_architecture() -> None:
    rows = cal.read_rows(CSV)
    assert len(rows) == 20
    assert {r.board for r in rows} == {"ZCU104", "U50"}
    assert all(r.arch in BUILTINS for r in rows)
    yolo_u50 = next(r for r in rows if r.board == "U50" and r.arch == "yolov3")
    assert cal.row_device(yolo_u50, DEVICES).clock_mhz == 270  # the table's clock, not 300
    assert sum(r.lat_ms is not None for r in rows) == 11  # 1-thread latency: ZCU104 only


def test_lookup_baseline_reproduces_the_issue_figures() -> None:
    rows = cal.read_rows(CSV)
    zcu = [r for r in rows if r.board == "ZCU104"]
    u50 = [r for r in rows if r.board == "U50"]

    def factors(fit_rows, test_rows):
        preds = cal.lookup_baseline(fit_rows, test_rows, DEVICES)
        return [cal.error_factor(p, r.fps_multi) for p, r in zip(preds, test_rows)]

    assert cal.geomean(factors(zcu, u50)) == pytest.approx(1.15, abs=0.01)
    assert cal.geomean(factors(u50, zcu)) == pytest.approx(1.34, abs=0.01)
    assert max(factors(u50, zcu)) == pytest.approx(4.15, abs=0.01)  # MobileNetV2 on ZCU104


def test_error_factor_is_symmetric_and_at_least_one() -> None:
    assert cal.error_factor(2.0, 1.0) == cal.error_factor(1.0, 2.0) == 2.0
    assert cal.error_factor(3.0, 3.0) == 1.0
    assert cal.geomean([2.0, 0.5]) == pytest.approx(1.0)


def _conv(name: str, c_in: int, c_out: int, hw: int, k: int = 3, groups: int = 1) -> LayerCost:
    return LayerCost(name, "Conv", "depthwise" if groups == c_in > 1 else "conv",
                     c_out * hw * hw * (c_in // groups) * k * k, c_out * (c_in // groups) * k * k,
                     c_in * hw * hw, c_out * hw * hw, True, c_in, c_out, hw, hw, k, k, groups)


def _fc(name: str, k: int, n: int) -> LayerCost:
    return LayerCost(name, "Gemm", "gemm", k * n, k * n, k, n, True, k, n, 1, 1, 1, 1)


SYNTHETIC = {  # compute-, memory- and overhead-bound mixes
    "dense": [_conv("a", 128, 128, 56), _conv("b", 256, 256, 28)],
    "fc": [_conv("a", 64, 64, 28), _fc("f", 25088, 4096)],
    "many_small": [_conv(f"s{i}", 32, 32, 7, 1) for i in range(40)],
    "depthwise": [_conv("d", 256, 256, 56, groups=256), _conv("p", 256, 256, 56, 1)],
    "wide": [_conv("w", 512, 512, 14), _conv("w2", 512, 1024, 14, 1)],
}


def _synthetic_rows(truth: DpuParams) -> list[cal.CalibrationRow]:
    rows = []
    for board in ("ZCU104", "U50"):
        for arch, layers in SYNTHETIC.items():
            row = cal.CalibrationRow(f"{board}-{arch}", board, arch, arch, 1.0, 300.0, 1.0, 1.0, 0.5, "synthetic")
            pred = cal.predict(row, layers, DEVICES, truth)
            rows.append(dataclasses.replace(row, fps_multi=pred.fps, lat_ms=pred.lat_ms if board == "ZCU104" else None))
    return rows


def test_fit_recovers_the_parameters_that_made_the_data() -> None:
    truth = DpuParams().replace(compute_efficiency=0.7, memory_efficiency=0.45, layer_overhead_cycles=6000.0,
                                call_overhead_us=250.0, host_call_overhead_ms={"shared_ddr": 1.1, "pcie": 0.4})
    rows = _synthetic_rows(truth)
    fitted = cal.fit(rows, SYNTHETIC, DEVICES, DpuParams())
    for row in rows:
        assert cal.predict(row, SYNTHETIC[row.arch], DEVICES, fitted).fps == pytest.approx(row.fps_multi, rel=0.02)
    assert fitted.compute_efficiency == pytest.approx(0.7, rel=0.05)
    assert fitted.memory_efficiency == pytest.approx(0.45, rel=0.05)
    assert fitted.host_call_overhead_ms["shared_ddr"] == pytest.approx(1.1, rel=0.05)
    assert fitted.host_call_overhead_ms["pcie"] == 0.4  # no pcie latency rows: stays the prior
    assert set(fitted.fitted) == {*cal.FITTED, "host_call_overhead_ms.shared_ddr"}
    assert fitted.fit["fps_geomean_error_factor"] < 1.02 and len(fitted.fit["rows"]) == len(rows)


def test_fit_keeps_unidentifiable_parameters_near_their_prior() -> None:
    truth = DpuParams().replace(compute_efficiency=0.6)
    rows = [r for r in _synthetic_rows(truth) if r.board == "U50" and r.arch in ("dense", "wide")]
    fitted = cal.fit(rows, SYNTHETIC, DEVICES, DpuParams())
    # HBM never binds these rows, so they say nothing about the memory efficiency.
    assert fitted.memory_efficiency == pytest.approx(DpuParams().memory_efficiency, rel=0.05)
    assert "host_call_overhead_ms.shared_ddr" not in fitted.fitted


def test_shipped_parameters_were_fitted_on_the_calibration_rows_only() -> None:
    params = load_params()
    assert PARAMS_FILE.is_file()
    assert set(params.fitted) >= set(cal.FITTED)
    rows = params.fit["rows"]
    assert len(rows) == 20 and all(r.split()[1] in ("ZCU104", "U50") for r in rows)
    assert params.fit["csv"] == "shared/reference/fpga_calibration.csv"
    assert 0 < params.compute_efficiency <= 1 and 0 < params.memory_efficiency <= 1


def test_params_file_round_trip_and_errors(tmp_path: Path) -> None:
    params = DpuParams().replace(compute_efficiency=0.66, fitted=("compute_efficiency",),
                                 fit={"rows": ["1 ZCU104 x"]})
    path = tmp_path / "p.yaml"
    save_params(params, path, "a test fit\nsecond line")
    text = path.read_text()
    assert text.startswith("# a test fit\n# second line\n")
    loaded = load_params(path)
    assert loaded == params and loaded.fit == params.fit
    path.write_text("params: {compute_eficiency: 0.5}\n")
    with pytest.raises(TunerError, match="compute_eficiency"):
        load_params(path)
    path.write_text("params: {memory_efficiency: -1}\n")
    with pytest.raises(TunerError, match="positive"):
        load_params(path)
    path.write_text("params: {host_call_overhead_ms: {usb: 1}}\n")
    with pytest.raises(TunerError, match="host links"):
        load_params(path)
    assert load_params(tmp_path / "missing.yaml") == DpuParams()
