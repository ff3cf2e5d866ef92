"""The FPGA device catalog: built-in values, sources, and schema errors for user files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tuner.costmodels.fpga.devices import BUILTIN_CATALOG, load_devices
from tuner.errors import TunerError

EXPECTED_KEYS = {
    "zcu102", "zcu104", "kv260", "u50", "u50lv", "u55c", "u280", "u200", "u250", "vck190",
    "vck5000", "aws-f1",
}
REQUIRED_PARAMS = {
    "dpu", "arch", "pp", "icp", "ocp", "cores", "batch_engines", "clock_mhz",
    "memory_bandwidth_gbps", "onchip_buffer_kb", "host_link",
}


def _builtin_raw() -> dict:
    return yaml.safe_load(BUILTIN_CATALOG.read_text())


def _write_extra(tmp_path: Path, devices: dict) -> Path:
    path = tmp_path / "my_fpgas.yaml"
    path.write_text(yaml.safe_dump({"devices": devices}))
    return path


def test_builtin_catalog_lists_every_supported_board() -> None:
    assert set(load_devices()) == EXPECTED_KEYS


def test_every_parameter_has_a_source() -> None:
    for key, device in load_devices().items():
        missing = REQUIRED_PARAMS - set(device.sources)
        assert not missing, f"{key} lacks sources for {missing}"
        assert all(len(s) > 10 for s in device.sources.values()), key
        if device.power_w is not None:
            assert "power_w" in device.sources


def test_derived_peak_matches_vendor_peak_figures() -> None:
    devices = load_devices()
    # Vendor peaks (hardware.md A.1/A.2): ZCU104 2.46 TOPS, ZCU102 3.45 TOPS, U50 7,373 GOPS.
    assert devices["zcu104"].peak_tops == pytest.approx(2.458, rel=1e-3)
    assert devices["zcu102"].peak_tops == pytest.approx(3.45, rel=2e-3)
    assert devices["u50"].peak_tops == pytest.approx(7.373, rel=1e-3)


def test_table_clock_is_used_where_it_differs_from_nominal() -> None:
    devices = load_devices()
    assert devices["u280"].clock_mhz == 150
    assert devices["u50lv"].clock_mhz == 192.5
    assert devices["zcu102"].clock_mhz == 281


def test_engines_are_listed_per_core() -> None:
    devices = load_devices()
    assert devices["u280"].batch_engines == (4, 5, 5)
    assert devices["u50"].batch_engines == (3, 3)
    assert devices["zcu104"].batch_engines == (1, 1)
    assert devices["u200"].batch_engines == (4, 4)


def test_unverified_figures_are_flagged() -> None:
    devices = load_devices()
    assert "cores" in devices["aws-f1"].unverified  # F1 kernel count: the U200's, assumed
    assert "memory_bandwidth_gbps" in devices["zcu104"].unverified
    assert "pp" not in devices["zcu104"].unverified
    assert "memory_bandwidth_gbps" not in devices["u200"].unverified


def test_host_link_and_price_key() -> None:
    devices = load_devices()
    assert devices["aws-f1"].host_link == "pcie"
    assert devices["aws-f1"].price_key == "fpga.aws-f1"
    assert devices["kv260"].host_link == "shared_ddr"
    assert devices["u50"].power_w == 75
    assert devices["zcu104"].power_w is None


def test_user_file_adds_and_overrides_devices(tmp_path: Path) -> None:
    raw = _builtin_raw()["devices"]
    mine = copy.deepcopy(raw["u250"])
    mine["cores"] = {"value": 3, "source": "our U250 runs the gen3x16 xdma 3.1 shell"}
    custom = copy.deepcopy(raw["zcu104"])
    custom["description"] = "in-house ZCU104 with faster DDR"
    custom["memory_bandwidth_gbps"] = {"value": 25.6, "source": "our board measurement"}
    devices = load_devices(_write_extra(tmp_path, {"u250": mine, "lab-zcu104": custom}))
    assert devices["u250"].cores == 3
    assert devices["u250"].batch_engines == (4, 4, 4)
    assert devices["lab-zcu104"].memory_bandwidth_gbps == 25.6
    assert devices["zcu104"].memory_bandwidth_gbps == 19.2


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path) -> None:
    dev = copy.deepcopy(_builtin_raw()["devices"]["zcu104"])
    dev["pp"]["sorce"] = "typo"
    with pytest.raises(TunerError) as info:
        load_devices(_write_extra(tmp_path, {"mine": dev}))
    message = str(info.value)
    assert "sorce" in message and "Unknown key" in message and "mine.pp" in message


def test_unknown_device_parameter_is_rejected(tmp_path: Path) -> None:
    dev = copy.deepcopy(_builtin_raw()["devices"]["zcu104"])
    dev["dsp_count"] = {"value": 1728, "source": "datasheet"}
    with pytest.raises(TunerError, match="dsp_count"):
        load_devices(_write_extra(tmp_path, {"mine": dev}))


def test_missing_source_is_rejected(tmp_path: Path) -> None:
    dev = copy.deepcopy(_builtin_raw()["devices"]["zcu104"])
    dev["clock_mhz"] = {"value": 300}
    with pytest.raises(TunerError) as info:
        load_devices(_write_extra(tmp_path, {"mine": dev}))
    assert "mine.clock_mhz.source" in str(info.value)
    assert "source" in str(info.value).split(".", 2)[-1]


def test_engine_list_must_match_cores(tmp_path: Path) -> None:
    dev = copy.deepcopy(_builtin_raw()["devices"]["u280"])
    dev["batch_engines"]["value"] = [4, 5]
    with pytest.raises(TunerError, match="batch_engines lists 2 cores but cores is 3"):
        load_devices(_write_extra(tmp_path, {"mine": dev}))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pp", {"value": 0, "source": "a figure"}, "greater than 0"),
        ("host_link", {"value": "usb", "source": "a figure"}, "pcie"),
        ("price_key", "aws-f1", "fpga"),
    ],
)
def test_bad_values_are_echoed(tmp_path: Path, field: str, value: object, expected: str) -> None:
    dev = copy.deepcopy(_builtin_raw()["devices"]["zcu104"])
    dev[field] = value
    with pytest.raises(TunerError) as info:
        load_devices(_write_extra(tmp_path, {"mine": dev}))
    assert expected in str(info.value) and f"mine.{field}" in str(info.value)


def test_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="must exist"):
        load_devices(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed\n")
    with pytest.raises(TunerError, match="YAML"):
        load_devices(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("devices: {}\n")
    with pytest.raises(TunerError, match="devices"):
        load_devices(empty)


def test_pool_window_limits_are_sourced_per_dpu_family() -> None:
    devices = load_devices()
    assert devices["u50"].pool_kernel_max == 8 and "PG367" in devices["u50"].sources["pool_kernel_max"]
    assert devices["u200"].pool_kernel_max == 16 and "PG400" in devices["u200"].sources["pool_kernel_max"]
    assert "pool_kernel_max" in devices["zcu104"].unverified  # assumed, see its source
    assert devices["vck190"].pool_kernel_max is None  # no limit known: every pool on the DPU


def test_only_the_dpucvdx8h_cascades_its_element_wise_engine_behind_the_conv() -> None:
    devices = load_devices()
    vck5000 = devices["vck5000"]
    assert vck5000.conv_eltwise_cascade == 8  # DPUCVDX8H_ISA1_F2W2_8PE.prototxt eltwise conv_cascade
    assert "conv_cascade" in vck5000.sources["conv_eltwise_cascade"]
    assert "conv_eltwise_cascade" not in vck5000.unverified
    # DPUCVDX8G (its ISA3 prototxts have no conv_cascade) and the PL DPUs: the add is a layer of its own
    assert all(d.conv_eltwise_cascade == 0 for key, d in devices.items() if key != "vck5000")
