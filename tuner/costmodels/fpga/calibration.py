"""Calibration and validation of the DPU cost model on AMD's published measurements.

The rows of shared/reference/fpga_calibration.csv (ZCU104 and Alveo U50, AMD Model Zoo) are
the only data the model's free parameters may be fitted to. A row is predicted exactly as a
user's configuration is: the catalog device (at the row's published DPU clock), every DPU
core, a batch of one instance per batch engine (what the Model Zoo's multi-thread runs do),
through `tuner.costmodels.fpga.dpu_model.estimate`. Latency rows are 1 thread, batch 1, one core.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.catalog import CATALOG_DIR
from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.dpu_model import estimate
from tuner.costmodels.fpga.params import DpuParams
from tuner.costmodels.graph import LayerCost
from tuner.errors import field_error

# A copy of shared/reference/fpga_calibration.csv (AMD Model Zoo tables), shipped so the fit can be
# reproduced from an installed package.
DEFAULT_CSV = CATALOG_DIR / "fpga_calibration.csv"
BOARD_DEVICES = {"ZCU104": "zcu104", "U50": "u50"}
# Model Zoo model name (up to the dataset) -> reference architecture in tuner.models.zoo.
MODEL_ARCHS = {
    "cf_resnet50": "resnet50", "cf_resnet18": "resnet18", "cf_inceptionv1": "inception_v1",
    "cf_mobilenetv2": "mobilenet_v2", "cf_squeezenet": "squeezenet", "dk_yolov3": "yolov3",
    "tf_inceptionv1": "inception_v1_tf", "tf_inceptionv3": "inception_v3",
    "tf_mobilenetv1": "mobilenet_v1", "tf_resnetv1_50": "resnet50_tf", "tf_vgg16": "vgg16",
}
# Fitted on throughput; host_call_overhead_ms[shared_ddr] is fitted on latency afterwards.
FITTED = ("compute_efficiency", "memory_efficiency", "layer_overhead_cycles", "call_overhead_us")
_BOUNDS = {"compute_efficiency": (0.2, 1.0), "memory_efficiency": (0.05, 1.0),
           "layer_overhead_cycles": (0.0, 60000.0), "call_overhead_us": (0.0, 3000.0)}
_SCALES = {"compute_efficiency": 0.2, "memory_efficiency": 0.2,
           "layer_overhead_cycles": 3000.0, "call_overhead_us": 100.0}
PRIOR_WEIGHT = 0.05  # pulls parameters the rows cannot identify back to their prior


@dataclass(frozen=True)
class CalibrationRow:
    """One published measurement: multi-thread fps, and 1-thread latency where published."""

    row_id: str
    board: str
    model: str
    arch: str
    gop: float
    dpu_mhz: float
    fps_multi: float
    lat_ms: float | None
    eta: float
    source: str


@dataclass(frozen=True)
class Prediction:
    row: CalibrationRow
    fps: float
    lat_ms: float

    @property
    def fps_factor(self) -> float:
        """Error factor of throughput: max(pred / pub, pub / pred) >= 1."""
        return error_factor(self.fps, self.row.fps_multi)

    @property
    def lat_factor(self) -> float | None:
        return error_factor(self.lat_ms, self.row.lat_ms) if self.row.lat_ms else None


def read_rows(path: Path = DEFAULT_CSV) -> list[CalibrationRow]:
    """The calibration rows of `path`, each mapped to its device and reference architecture."""
    if not Path(path).is_file():
        raise field_error("calibration CSV", str(path), "The file must exist.",
                          "Pass --csv with the path of shared/reference/fpga_calibration.csv.")
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            prefix = rec["model"].split("_imagenet")[0].split("_voc")[0].split("_1.0")[0]
            if rec["board"] not in BOARD_DEVICES or prefix not in MODEL_ARCHS:
                raise field_error(f"row {rec['id']}", f"{rec['board']} {rec['model']}",
                                  f"Boards {list(BOARD_DEVICES)} and models {list(MODEL_ARCHS)} "
                                  "are mapped.", "Add the mapping in tuner/costmodels/fpga/calibration.py.")
            rows.append(CalibrationRow(
                row_id=rec["id"], board=rec["board"], model=rec["model"], arch=MODEL_ARCHS[prefix],
                gop=float(rec["gop_per_img"]), dpu_mhz=float(rec["dpu_mhz"]),
                fps_multi=float(rec["fps_multi"]),
                lat_ms=float(rec["lat_ms"]) if rec["lat_ms"] not in ("", "-") else None,
                eta=float(rec["eta"]), source=rec["source"]))
    return rows


def architecture_layers(name: str, log: Callable[[str], None] = lambda _: None) -> list[LayerCost]:
    """Per-layer costs of a built-in model (reference architectures included), from its fp32
    ONNX export (cached). The DPU prices fp32 and int8 (QDQ) graphs alike."""
    import onnx

    from tuner.costmodels.graph import analyze_graph
    from tuner.models.builtin import BUILTINS, fp32_path

    model = BUILTINS[name]
    path = fp32_path(model, log)
    return analyze_graph(onnx.load(str(path)), {s.name: [1, *s.shape] for s in model.inputs})


def row_device(row: CalibrationRow, devices: dict[str, FpgaDevice]) -> FpgaDevice:
    """The catalog device of a row, at the DPU clock the row was measured at."""
    return dataclasses.replace(devices[BOARD_DEVICES[row.board]], clock_mhz=row.dpu_mhz)


def predict(row: CalibrationRow, layers: Sequence[LayerCost], devices: dict[str, FpgaDevice],
            params: DpuParams) -> Prediction:
    """Predicted multi-thread fps (every core, one instance per engine) and 1-thread latency."""
    single = estimate(list(layers), row_device(row, devices), 1, 1, params)
    return Prediction(row, predict_fps(row, layers, devices, params), single.latency_ms)


def predict_fps(row: CalibrationRow, layers: Sequence[LayerCost], devices: dict[str, FpgaDevice],
                params: DpuParams) -> float:
    """Predicted multi-thread fps of a row: every core, one instance per batch engine."""
    device = row_device(row, devices)
    return estimate(list(layers), device, max(device.batch_engines), device.cores, params).throughput_rps


def error_factor(predicted: float, published: float) -> float:
    return max(predicted / published, published / predicted)


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(np.mean(np.log(values)))) if values else float("nan")


def lookup_baseline(fit_rows: Sequence[CalibrationRow], test_rows: Sequence[CalibrationRow],
                    devices: dict[str, FpgaDevice]) -> list[float]:
    """The model to beat: fps = measured efficiency of the architecture x peak / GOP.

    The efficiency of an architecture is looked up in `fit_rows` (mean over its rows); one the
    fit rows lack gets the median efficiency of all fit rows.
    """
    by_arch: dict[str, list[float]] = {}
    for row in fit_rows:
        by_arch.setdefault(row.arch, []).append(_eta(row, devices))
    overall = float(np.median([_eta(row, devices) for row in fit_rows]))
    out = []
    for row in test_rows:
        eff = float(np.mean(by_arch[row.arch])) if row.arch in by_arch else overall
        out.append(eff * row_device(row, devices).peak_tops * 1e3 / row.gop)
    return out


def _eta(row: CalibrationRow, devices: dict[str, FpgaDevice]) -> float:
    return row.fps_multi * row.gop / (row_device(row, devices).peak_tops * 1e3)


def fit(rows: Sequence[CalibrationRow], layers: dict[str, Sequence[LayerCost]],
        devices: dict[str, FpgaDevice], start: DpuParams,
        log: Callable[[str], None] = lambda _: None) -> DpuParams:
    """Fit the FITTED parameters to the rows' throughput, then the edge host overhead to their
    latency, by least squares on log errors (scipy trust-region reflective, bounded), with a
    weak pull towards the prior so that what the rows cannot identify stays at its prior.

    Returns:
        `start` with the fitted values, `fitted` naming them and `fit` describing the fit.
    """
    from scipy.optimize import least_squares

    def with_values(x: np.ndarray) -> DpuParams:
        return start.replace(**{name: float(v) for name, v in zip(FITTED, x)})

    def residuals(x: np.ndarray) -> np.ndarray:
        params = with_values(x)
        errs = [math.log(predict_fps(r, layers[r.arch], devices, params) / r.fps_multi) for r in rows]
        prior = [PRIOR_WEIGHT * (v - getattr(start, n)) / _SCALES[n] for n, v in zip(FITTED, x)]
        return np.array(errs + prior)

    lower, upper = zip(*(_BOUNDS[name] for name in FITTED))
    best = None
    for scale in (1.0, 0.5, 2.0):  # a few starts: the max() of the roofline makes it non-smooth
        x0 = np.clip([getattr(start, n) * (scale if "overhead" in n else 1.0) for n in FITTED],
                     np.array(lower) + 1e-9, np.array(upper) - 1e-9)
        result = least_squares(residuals, x0, bounds=(lower, upper), x_scale=[_SCALES[n] for n in FITTED],
                               diff_step=1e-3)
        log(f"  start x{scale}: cost {result.cost:.5f} at {np.round(result.x, 4).tolist()}")
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    params = with_values(best.x)
    fitted = list(FITTED)
    lat_rows = [r for r in rows if r.lat_ms and devices[BOARD_DEVICES[r.board]].host_link == "shared_ddr"]
    if lat_rows:
        params = _fit_host_overhead(lat_rows, layers, devices, params)
        fitted.append("host_call_overhead_ms.shared_ddr")
    fps_factors = [predict(r, layers[r.arch], devices, params).fps_factor for r in rows]
    return params.replace(fitted=tuple(fitted), fit={
        "rows": [f"{r.row_id} {r.board} {r.model}" for r in rows],
        "method": "scipy.optimize.least_squares (bounded, 3 starts) on log(predicted / published "
                  f"multi-thread fps), prior weight {PRIOR_WEIGHT}; host_call_overhead_ms."
                  "shared_ddr then by least squares on log 1-thread latency",
        "fps_geomean_error_factor": round(geomean(fps_factors), 4),
        "fps_worst_error_factor": round(max(fps_factors), 4),
    })


def _fit_host_overhead(rows: Sequence[CalibrationRow], layers: dict[str, Sequence[LayerCost]],
                       devices: dict[str, FpgaDevice], params: DpuParams) -> DpuParams:
    from scipy.optimize import least_squares

    def with_value(x: np.ndarray) -> DpuParams:
        return params.replace(host_call_overhead_ms={**params.host_call_overhead_ms,
                                                     "shared_ddr": float(x[0])})

    def residuals(x: np.ndarray) -> np.ndarray:
        p = with_value(x)
        return np.array([math.log(predict(r, layers[r.arch], devices, p).lat_ms / r.lat_ms)
                         for r in rows if r.lat_ms])

    x0 = [params.host_call_overhead_ms["shared_ddr"]]
    return with_value(least_squares(residuals, x0, bounds=([0.0], [20.0])).x)
