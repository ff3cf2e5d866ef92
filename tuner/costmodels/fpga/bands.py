"""How far to trust an FPGA estimate: each board's expected error, from held-out published figures.

`experiments/fpga_validation.py` predicts every published figure with fits that did not see it
(tuner.costmodels.fpga.fitting.cross_validate) and writes `tuner/catalog/fpga_error_bands.yaml`:

- a board with published figures: the error on its models left out of its own calibration
  (geometric mean = "typical", largest = "worst"): what a user's own model should expect;
- `uncalibrated` (a board without published figures, or one a user adds): the error of boards
  predicted by a fit that never saw them, over every board, which is wider.

The search ranks an estimate at the pessimistic end of its typical band
(`tuner.metrics.Metrics.objective_values`), so a wide band costs an FPGA configuration its place.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tuner.catalog import CATALOG_DIR
from tuner.errors import field_error
from tuner.metrics import ErrorBand

BANDS_FILE = CATALOG_DIR / "fpga_error_bands.yaml"
UNCALIBRATED = "uncalibrated"
# Before any validation was written (a fresh checkout that deleted the file): no figure to go on.
_UNKNOWN = ErrorBand(typical_factor=2.0, worst_factor=4.0, calibrated=False, rows=0,
                     basis="no validation on record (tuner/catalog/fpga_error_bands.yaml missing): a guess")


def band_for(device_key: str, path: Path | None = None) -> ErrorBand:
    """The error band of estimates on `device_key`: its own where it was calibrated, else the
    uncalibrated one."""
    bands = load_bands(path)
    return bands.get(device_key) or bands.get(UNCALIBRATED) or _UNKNOWN


def load_bands(path: Path | None = None) -> dict[str, ErrorBand]:
    """Bands by device key, and `uncalibrated`; empty when the file does not exist."""
    path = Path(path or BANDS_FILE)
    if not path.is_file():
        return {}
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _load(path_str: str, _mtime_ns: int) -> dict[str, ErrorBand]:
    raw = yaml.safe_load(Path(path_str).read_text()) or {}
    out: dict[str, ErrorBand] = {}
    for key, value in (raw.get("bands") or {}).items():
        try:
            band = ErrorBand.from_dict(value)
            if band is None:
                raise ValueError("it is empty")
            out[str(key)] = band
        except (KeyError, TypeError, ValueError) as exc:
            raise field_error(f"{path_str}: bands.{key}", value, f"It must hold typical_factor, worst_factor, "
                              f"calibrated, rows and basis ({exc}).", "Rerun experiments/fpga_validation.py.") from exc
    return out


def save_bands(bands: dict[str, ErrorBand], path: Path, header: str, about: dict[str, Any]) -> None:
    body = {"about": about, "bands": {key: band.to_dict() for key, band in bands.items()}}
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(body, sort_keys=False, width=100))
