"""Calibration of the DPU model: the data, the baseline to beat, the fits, the parameter file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuner.costmodels.fpga import calibration as cal
from tuner.costmodels.fpga import fitting
from tuner.costmodels.fpga.devices import load_devices
from tuner.costmodels.fpga.params import (
    BOARD_FITTED,
    PARAMS_FILE,
    DpuParams,
    load_params,
    save_params,
)
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import TunerError
from tuner.models.builtin import BUILTINS

DEVICES = load_devices()
CSV = cal.DEFAULT_CSV


def test_every_published_row_maps_to_a_catalog_device_and_a_reference_architecture() -> None:
    rows = cal.read_rows(CSV, DEVICES)
    assert len(rows) == 91
    per_device = {key: len(group) for key, group in fitting.by_device(rows).items()}
    assert set(per_device) == set(DEVICES) - {"aws-f1"}  # AMD published no figure of the F1 build
    assert per_device["zcu104"] == 11 and per_device["u200"] == 4
    assert all(r.arch in BUILTINS for r in rows)
    yolo_u50 = next(r for r in rows if r.device == "u50" and r.arch == "yolov3")
    assert cal.row_device(yolo_u50, DEVICES).clock_mhz == 270  # the table's clock, not 300
    assert sum(r.lat_ms is not None for r in rows) == 33  # 1-thread latency: the edge boards only
    assert all(DEVICES[r.device].host_link == "shared_ddr" for r in rows if r.lat_ms is not None)


def test_a_row_of_an_unknown_device_or_model_is_refused_by_name(tmp_path: Path) -> None:
    text = CSV.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([text[0], text[1].replace(",zcu104,", ",zcu999,", 1)]) + "\n")
    with pytest.raises(TunerError, match="zcu999"):
        cal.read_rows(bad, DEVICES)
    bad.write_text("\n".join([text[0], text[1].replace("cf_resnet50", "cf_lenet", 1)]) + "\n")
    with pytest.raises(TunerError, match="cf_lenet"):
        cal.read_rows(bad, DEVICES)


def test_lookup_baseline_reproduces_the_issue_figures() -> None:
    rows = cal.read_rows(CSV)
    zcu = [r for r in rows if r.device == "zcu104"]
    u50 = [r for r in rows if r.device == "u50"]

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
    for device in ("zcu104", "u50"):
        for arch, layers in SYNTHETIC.items():
            row = cal.CalibrationRow(f"{device}-{arch}", device, device.upper(), arch, arch, 1.0, 300.0, 1.0, 1.0,
                                     "synthetic")
            pred = cal.predict(row, layers, DEVICES, truth)
            rows.append(dataclasses.replace(row, fps_multi=pred.fps, lat_ms=pred.lat_ms if device == "zcu104" else None))
    return rows


def test_fit_recovers_the_parameters_that_made_the_data() -> None:
    truth = DpuParams().replace(compute_efficiency=0.7, memory_efficiency=0.45, layer_overhead_cycles=6000.0,
                                call_overhead_us=250.0, host_call_overhead_ms={"shared_ddr": 1.1, "pcie": 0.4})
    rows = _synthetic_rows(truth)
    fitted = fitting.fit_shared(rows, SYNTHETIC, DEVICES, DpuParams())
    for row in rows:
        assert cal.predict(row, SYNTHETIC[row.arch], DEVICES, fitted).fps == pytest.approx(row.fps_multi, rel=0.03)
    assert fitted.compute_efficiency == pytest.approx(0.7, rel=0.05)
    assert fitted.memory_efficiency == pytest.approx(0.45, rel=0.05)
    assert fitted.host_call_overhead_ms["shared_ddr"] == pytest.approx(1.1, rel=0.05)
    assert fitted.host_call_overhead_ms["pcie"] == 0.4  # no pcie latency rows: stays the prior
    assert set(fitted.fitted) == {*fitting.FITTED, "host_call_overhead_ms.shared_ddr"}


def test_fit_keeps_unidentifiable_parameters_near_their_prior() -> None:
    truth = DpuParams().replace(compute_efficiency=0.6)
    rows = [r for r in _synthetic_rows(truth) if r.device == "u50" and r.arch in ("dense", "wide")]
    fitted = fitting.fit_shared(rows, SYNTHETIC, DEVICES, DpuParams())
    # HBM never binds these rows, so they say nothing about the memory efficiency.
    assert fitted.memory_efficiency == pytest.approx(DpuParams().memory_efficiency, rel=0.05)
    assert "host_call_overhead_ms.shared_ddr" not in fitted.fitted


def test_fast_row_terms_equal_the_model_itself() -> None:
    """The fits evaluate RowTerms, users get estimate(): they must be one model."""
    params = DpuParams().replace(compute_efficiency=0.7, memory_efficiency=0.45, layer_overhead_cycles=6000.0,
                                 call_overhead_us=250.0)
    residual = [_conv("a", 64, 256, 56, 1), _conv("b", 64, 256, 56, 1),  # a block's last conv and its shortcut
                LayerCost("add", "Add", "eltwise", 256 * 56 * 56, 0, 2 * 256 * 56 * 56, 256 * 56 * 56, True,
                          256, 256, 56, 56)]  # cascaded into "b" on the VCK5000
    for device in ("zcu102", "u50", "u280", "u250", "vck190", "vck5000"):  # edge, HBM, uneven, DDR, PL clock, PEs
        for arch, layers in {**SYNTHETIC, "residual": residual}.items():
            row = cal.CalibrationRow("x", device, device, arch, arch, 1.0, DEVICES[device].clock_mhz, 1.0, None, "")
            fast = cal.RowTerms(row, layers, DEVICES, params).fps(
                *(getattr(params, name) for name in fitting.FITTED))
            assert fast == pytest.approx(cal.predict_fps(row, layers, DEVICES, params), rel=1e-9), (device, arch)


def test_a_board_fit_moves_towards_its_own_rows_and_only_within_its_bounds() -> None:
    shared = DpuParams().replace(compute_efficiency=0.9, memory_efficiency=0.8)
    slow = DpuParams().replace(compute_efficiency=0.45, memory_efficiency=0.8)
    rows = [dataclasses.replace(r, fps_multi=cal.predict_fps(r, SYNTHETIC[r.arch], DEVICES, slow))
            for r in _synthetic_rows(shared) if r.device == "u50"]
    own = fitting.fit_board(rows, SYNTHETIC, DEVICES, shared)
    assert set(own) == set(BOARD_FITTED)
    assert 0.45 <= own["compute_efficiency"] < 0.6  # pulled towards 0.9, but the rows win
    assert own["memory_efficiency"] <= 1.0  # U50's HBM bandwidth is sourced: no correction above 1
    priced = shared.replace(boards={"u50": own})
    assert priced.for_device("u50").compute_efficiency == own["compute_efficiency"]
    assert priced.for_device("zcu104").compute_efficiency == 0.9 and not priced.calibrated("zcu104")


def test_cross_validation_predicts_each_row_without_it() -> None:
    truth = DpuParams().replace(compute_efficiency=0.7)
    rows = _synthetic_rows(truth)
    held = fitting.cross_validate(rows, SYNTHETIC, DEVICES, DpuParams())
    assert [h.row for h in held] == rows
    # Synthetic rows of one model: every fit recovers it, so the held-out figures are near exact.
    assert max(h.calibrated_factor for h in held) < 1.1
    # A row the fit never saw differs from its in-sample prediction once the rows disagree.
    noisy = [dataclasses.replace(r, fps_multi=r.fps_multi * (1.5 if i == 0 else 1.0)) for i, r in enumerate(rows)]
    first = fitting.cross_validate(noisy, SYNTHETIC, DEVICES, DpuParams())[0]
    assert first.calibrated_factor > 1.3  # its own inflated figure was not in the fit that predicted it


def test_shipped_parameters_were_fitted_on_the_published_rows_only() -> None:
    params = load_params()
    assert PARAMS_FILE.is_file()
    assert set(params.fitted) >= set(fitting.FITTED)
    rows = params.fit["rows"]
    assert len(rows) == 91 and all(r.split()[1] in DEVICES for r in rows)
    assert params.fit["csv"] == "tuner/catalog/fpga_published.csv"
    assert set(params.boards) == set(DEVICES) - {"aws-f1"}
    assert 0 < params.compute_efficiency <= 1 and 0 < params.memory_efficiency <= 1


def test_params_file_round_trip_and_errors(tmp_path: Path) -> None:
    params = DpuParams().replace(compute_efficiency=0.66, fitted=("compute_efficiency",),
                                 boards={"u50": {"compute_efficiency": 0.5}}, fit={"rows": ["1 zcu104 x"]})
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


def test_a_board_entry_of_the_params_file_may_set_only_the_board_parameters(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("boards: {u50: {pcie_gbps: 3}}\n")
    with pytest.raises(TunerError, match="boards.u50"):
        load_params(path)
    path.write_text("boards: {u50: {compute_efficiency: 0}}\n")
    with pytest.raises(TunerError, match="positive"):
        load_params(path)
