"""Each FPGA estimate's expected error: the shipped bands, the file, and how the search ranks them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuner.costmodels.fpga.bands import BANDS_FILE, UNCALIBRATED, band_for, load_bands, save_bands
from tuner.costmodels.fpga.devices import load_devices
from tuner.costmodels.fpga.params import load_params
from tuner.errors import TunerError
from tuner.metrics import ErrorBand, Metrics


def test_every_calibrated_board_has_its_own_band_and_the_rest_the_wider_uncalibrated_one() -> None:
    bands = load_bands()
    assert BANDS_FILE.is_file()
    calibrated = set(load_params().boards)
    assert set(bands) == calibrated | {UNCALIBRATED}
    for key in calibrated:
        band = band_for(key)
        assert band.calibrated and band.rows >= 4 and 1.0 <= band.typical_factor <= band.worst_factor
        assert key in band.basis
    f1 = band_for("aws-f1")  # AMD published no figure of it
    assert f1 == bands[UNCALIBRATED] and not f1.calibrated and "uncalibrated" in f1.label()
    assert f1.rows == sum(b.rows for k, b in bands.items() if k != UNCALIBRATED)
    assert all(f1.typical_factor >= b.typical_factor and f1.worst_factor >= b.worst_factor
               for b in bands.values())  # never narrower than a calibrated board's
    assert set(load_devices()) - calibrated == {"aws-f1"}


def test_a_band_file_round_trips_and_a_broken_band_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bands.yaml"
    band = ErrorBand(1.2, 2.0, True, 9, "nine rows")
    save_bands({"u50": band, UNCALIBRATED: ErrorBand(1.5, 3.0, False, 90, "all")}, path, "test", {"x": 1})
    assert load_bands(path)["u50"] == band
    assert band_for("zcu104", path).typical_factor == 1.5  # not in the file: the uncalibrated band
    assert band.label() == "x1.20 typical, x2.00 worst (calibrated)"
    raw = yaml.safe_load(path.read_text())
    raw["bands"]["u50"]["worst_factor"] = 1.1  # below typical
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TunerError, match="bands.u50"):
        load_bands(path)


def test_an_estimate_competes_at_the_pessimistic_end_of_its_typical_band() -> None:
    band = ErrorBand(1.25, 2.0, True, 9, "nine rows")
    est = Metrics(1000.0, 2.0, 4.0, 5.0, 0.98, 0.5, estimated=True, error_band=band)
    assert est.objective_values() == pytest.approx([800.0, 5.0, 0.625])
    measured = Metrics(1000.0, 2.0, 4.0, 5.0, 0.98, 0.5, estimated=False)
    assert measured.objective_values() == [1000.0, 4.0, 0.5]
    assert est.to_dict()["error_band"]["typical_factor"] == 1.25 and measured.to_dict()["error_band"] is None
