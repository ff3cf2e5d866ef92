"""The GPU device catalog: peaks, memory and bandwidth of each card, every figure with its source.

The built-in catalog is `tuner/catalog/gpu_devices.yaml`. Each parameter is written as

    fp16_tflops: {value: 65, source: "hardware.md E: ...", unverified: false}

so no figure enters an estimate without saying where it comes from. The loader needs PyYAML
only (no pydantic), so `experiments/gpu_check.py` can read it on a bare GPU machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.catalog import CATALOG_DIR
from tuner.errors import TunerError, field_error

BUILTIN_CATALOG = CATALOG_DIR / "gpu_devices.yaml"
PRECISION_FIELDS: dict[str, str] = {
    "fp32": "fp32_tflops",
    "fp16": "fp16_tflops",
    "bf16": "bf16_tflops",
    "int8": "int8_tops",
}
_REQUIRED = ("fp32_tflops", "fp16_tflops", "bf16_tflops", "int8_tops", "memory_gb",
             "memory_bandwidth_gbps", "host_link_gbps", "tdp_w")
_NULLABLE = frozenset({"fp16_tflops", "bf16_tflops", "int8_tops"})
_CALIBRATION_KEYS = frozenset({"compute_efficiency", "call_overhead_ms", "measured_on", "source"})


@dataclass(frozen=True)
class GpuDevice:
    """One GPU model as the roofline sees it.

    Attributes:
        key: catalog key, e.g. "t4" (what TrialConfig.device names for gpu trials).
        description: human-readable card name.
        price_key: its row in the price table, e.g. "gpu.t4".
        name_regex: pattern matched against the CUDA device name of a measured card.
        peak_tflops: dense peak per precision in TFLOPS (TOPS for int8); None = no tensor path.
        memory_gb: device memory in GB.
        memory_bandwidth_gbps: device memory bandwidth in GB/s.
        host_link_gbps: host <-> device bandwidth per direction in GB/s.
        tdp_w: board power in W.
        sources: source of each parameter, keyed by parameter name.
        unverified: names of the parameters whose figures are unverified.
    """

    key: str
    description: str
    price_key: str
    name_regex: str
    peak_tflops: dict[str, float | None]
    memory_gb: float
    memory_bandwidth_gbps: float
    host_link_gbps: float
    tdp_w: float
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    unverified: frozenset[str] = frozenset()

    def peak_for(self, precision: str) -> float:
        """Dense peak in TFLOPS (TOPS for int8) for `precision`.

        Raises:
            TunerError: unknown precision, or the card has no tensor path for it.
        """
        if precision not in PRECISION_FIELDS:
            raise field_error("precision", precision, f"It must be one of {list(PRECISION_FIELDS)}.",
                              "Use fp32, fp16, bf16 or int8.")
        peak = self.peak_tflops.get(precision)
        if peak is None:
            raise field_error(
                "precision", precision,
                f"The {self.key} has no {precision} tensor path ({self.sources.get(PRECISION_FIELDS[precision], '')}).",
                "Choose another precision for this device.",
            )
        return peak


@dataclass(frozen=True)
class GpuCalibration:
    """Efficiency factors fitted on a real GPU's measurements (see tuner.costmodels.gpu.whatif)."""

    precision: str
    compute_efficiency: float
    call_overhead_ms: float
    measured_on: str
    source: str


def _param(key: str, name: str, raw: Any, nullable: bool) -> tuple[float | None, str, bool]:
    where = f"devices.{key}.{name}"
    if not isinstance(raw, dict) or set(raw) - {"value", "source", "unverified"} or "value" not in raw:
        raise field_error(where, raw, "Each parameter must be {value, source, unverified?}.",
                          'Write it as {value: 65, source: "where it comes from"}.')
    source = raw.get("source")
    if not isinstance(source, str) or len(source.strip()) < 3:
        raise field_error(f"{where}.source", source, "Every figure needs its source.",
                          "Name the document or page the figure comes from.")
    value = raw["value"]
    if value is None and nullable:
        return None, source, bool(raw.get("unverified", False))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        rule = "It must be a positive number" + (" or null (no tensor path)." if nullable else ".")
        raise field_error(f"{where}.value", value, rule, "Fix the figure in the catalog.")
    return float(value), source, bool(raw.get("unverified", False))


def _device(key: str, spec: Any) -> GpuDevice:
    if not isinstance(spec, dict):
        raise field_error(f"devices.{key}", spec, "A device must be a mapping.", "See gpu_devices.yaml.")
    known = {"description", "price_key", "name_regex", *_REQUIRED}
    extra = set(spec) - known
    missing = known - set(spec)
    if extra or missing:
        raise field_error(f"devices.{key}", sorted(extra or missing),
                          f"A device has exactly the keys {sorted(known)}.",
                          "Remove unknown keys and add missing ones.")
    if not re.fullmatch(r"gpu\.[a-z0-9][a-z0-9._-]*", str(spec["price_key"])):
        raise field_error(f"devices.{key}.price_key", spec["price_key"], "It must look like gpu.<name>.",
                          f"Use gpu.{key}.")
    try:
        re.compile(str(spec["name_regex"]))
    except re.error as exc:
        raise field_error(f"devices.{key}.name_regex", spec["name_regex"], f"It must be a regex ({exc}).",
                          "Fix the pattern.") from None
    values: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    unverified = set()
    for name in _REQUIRED:
        values[name], sources[name], flag = _param(key, name, spec[name], name in _NULLABLE)
        if flag:
            unverified.add(name)
    def required(name: str) -> float:
        value = values[name]
        assert value is not None, f"{name} is not nullable"  # _param refuses null for these
        return value

    return GpuDevice(
        key=key, description=str(spec["description"]), price_key=str(spec["price_key"]),
        name_regex=str(spec["name_regex"]),
        peak_tflops={p: values[f] for p, f in PRECISION_FIELDS.items()},
        memory_gb=required("memory_gb"), memory_bandwidth_gbps=required("memory_bandwidth_gbps"),
        host_link_gbps=required("host_link_gbps"), tdp_w=required("tdp_w"),
        sources=sources, unverified=frozenset(unverified),
    )


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TunerError(f"Cannot read the GPU catalog {path}: {exc}. Check the path and the YAML syntax.") from None
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise field_error("devices", type(data).__name__, f"{path} must hold a 'devices' mapping.",
                          "See tuner/catalog/gpu_devices.yaml for the format.")
    return data


def load_gpu_devices(path: Path | None = None) -> dict[str, GpuDevice]:
    """The GPU catalog keyed by device key (the built-in one unless `path` is given)."""
    data = _read(path or BUILTIN_CATALOG)
    return {str(k): _device(str(k), v) for k, v in data["devices"].items()}


def load_calibration(path: Path | None = None) -> dict[str, GpuCalibration]:
    """Calibrations of the catalog keyed by precision (empty until a real GPU was measured)."""
    raw = _read(path or BUILTIN_CATALOG).get("calibration") or {}
    out = {}
    for precision, row in raw.items():
        if precision not in PRECISION_FIELDS or not isinstance(row, dict) or set(row) != _CALIBRATION_KEYS:
            raise field_error(f"calibration.{precision}", row,
                              f"Each entry is keyed by a precision and has exactly {sorted(_CALIBRATION_KEYS)}.",
                              "Paste the 'calibration' entry that experiments/gpu_check.py wrote.")
        eff, overhead = float(row["compute_efficiency"]), float(row["call_overhead_ms"])
        if not 0 < eff <= 1 or overhead < 0:
            raise field_error(f"calibration.{precision}", row,
                              "compute_efficiency must be in (0, 1] and call_overhead_ms >= 0.",
                              "Re-run the fit.")
        out[precision] = GpuCalibration(precision, eff, overhead, str(row["measured_on"]), str(row["source"]))
    return out


def match_device(card_name: str, devices: dict[str, GpuDevice] | None = None) -> GpuDevice | None:
    """The catalog device whose name_regex matches a CUDA device name, e.g. "NVIDIA H100 80GB HBM3"."""
    for device in (devices if devices is not None else load_gpu_devices()).values():
        if re.search(device.name_regex, card_name):
            return device
    return None
