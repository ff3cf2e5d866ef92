"""AMD's published DPU figures, and the cost model's prediction of each.

`tuner/catalog/fpga_published.csv` holds the AMD Vitis AI Model Zoo measurements of every catalog
board that has them (written by experiments/fpga_zoo_extract.py from a Vitis-AI checkout; each
row names its tag and section). They are the only data the model's free parameters are fitted
to (`tuner.costmodels.fpga.fitting`). A row is predicted exactly as a user's configuration is:
the catalog device (at the row's published DPU clock), every DPU core, a batch of one instance
per batch engine (what the Model Zoo's multi-thread runs do), through
`tuner.costmodels.fpga.dpu_model.estimate`. Latency rows are 1 thread, batch 1, one core.
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
from tuner.costmodels.fpga.dpu_layers import (
    CONV_KINDS,
    layer_seconds,
    offchip_bytes,
    overlapped,
    timed_layers,
    with_cascade,
)
from tuner.costmodels.fpga.dpu_model import estimate
from tuner.costmodels.fpga.host import host_call_fixed_s, host_time_s, pcie_cap_rps, runs_on_host
from tuner.costmodels.fpga.params import DpuParams
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import field_error

DEFAULT_CSV = CATALOG_DIR / "fpga_published.csv"
# Model Zoo model name (up to the dataset) -> reference architecture in tuner.models.zoo.registry.
MODEL_ARCHS = {
    "cf_resnet50": "resnet50", "cf_resnet18": "resnet18", "cf_inceptionv1": "inception_v1",
    "cf_mobilenetv2": "mobilenet_v2", "cf_squeezenet": "squeezenet", "cf_squeeze": "squeezenet",
    "dk_yolov3": "yolov3", "tf_inceptionv1": "inception_v1_tf", "tf_inceptionv3": "inception_v3",
    "tf_mobilenetv1": "mobilenet_v1", "tf_resnetv1_50": "resnet50_tf", "tf_vgg16": "vgg16",
}


@dataclass(frozen=True)
class CalibrationRow:
    """One published measurement: multi-thread fps, and 1-thread latency where published.

    `device` is the catalog key (zcu104, u50, ...); `board` the Model Zoo's name for it.
    """

    row_id: str
    device: str
    board: str
    model: str
    arch: str
    gop: float
    dpu_mhz: float
    fps_multi: float
    lat_ms: float | None
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


def read_rows(path: Path = DEFAULT_CSV, devices: dict[str, FpgaDevice] | None = None) -> list[CalibrationRow]:
    """The published rows of `path`, each mapped to its catalog device and reference architecture."""
    if not Path(path).is_file():
        raise field_error("published figures CSV", str(path), "The file must exist.",
                          "Pass --csv with the path of tuner/catalog/fpga_published.csv.")
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            prefix = rec["model"].split("_imagenet")[0].split("_voc")[0].split("_1.0")[0]
            if prefix not in MODEL_ARCHS or (devices is not None and rec["device"] not in devices):
                raise field_error(f"row {rec['id']}", f"{rec['device']} {rec['model']}",
                                  f"Models {sorted(MODEL_ARCHS)} on catalog devices are mapped.",
                                  "Add the mapping in tuner/costmodels/fpga/calibration.py, or the device "
                                  "to the catalog.")
            rows.append(CalibrationRow(
                row_id=rec["id"], device=rec["device"], board=rec["board"], model=rec["model"],
                arch=MODEL_ARCHS[prefix], gop=float(rec["gop_per_img"]), dpu_mhz=float(rec["dpu_mhz"]),
                fps_multi=float(rec["fps_multi"]),
                lat_ms=float(rec["lat_ms"]) if rec["lat_ms"] not in ("", "-") else None,
                source=rec["source"]))
    return rows


def architecture_layers(name: str, log: Callable[[str], None] = lambda _: None) -> list[LayerCost]:
    """Per-layer costs of a built-in model (reference architectures included), from its fp32
    ONNX export (cached). The DPU prices fp32 and int8 (QDQ) graphs alike."""
    import onnx

    from tuner.costmodels.graph.analyze import analyze_graph
    from tuner.models.builtin import BUILTINS, fp32_path

    model = BUILTINS[name]
    path = fp32_path(model, log)
    return analyze_graph(onnx.load(str(path)), {s.name: [1, *s.shape] for s in model.inputs})


def row_device(row: CalibrationRow, devices: dict[str, FpgaDevice]) -> FpgaDevice:
    """The catalog device of a row, at the DPU clock the row was measured at."""
    return dataclasses.replace(devices[row.device], clock_mhz=row.dpu_mhz)


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


class RowTerms:
    """A row's multi-thread throughput as a fast function of the fitted parameters.

    `estimate` walks the layers in Python; a fit evaluates each row thousands of times. The
    cycles and off-chip bytes of every (core, pass, layer) do not depend on the fitted
    parameters, so they are computed once here and the roofline is evaluated in numpy. The
    result equals `predict_fps` (tests/test_fpga_calibration.py checks it).
    """

    def __init__(self, row: CalibrationRow, layers: Sequence[LayerCost], devices: dict[str, FpgaDevice],
                 params: DpuParams) -> None:
        device = row_device(row, devices)
        params = params.for_device(device.key)
        self.row, self.control_hz = row, device.control_clock_mhz * 1e6
        self.batch, busy = max(device.batch_engines), device.cores
        self.bandwidth_bps = device.memory_bandwidth_gbps * 1e9 / busy
        timed = timed_layers(list(layers), device)
        buf = device.onchip_buffer_kb * 1024
        self.host_threads = params.host_threads[device.host_link]
        self.cores = []  # per core: (compute s at efficiency 1, bytes, number of layer passes, host s)
        for engines in sorted(device.batch_engines, reverse=True)[:busy]:
            passes = [engines] * (self.batch // engines) + ([self.batch % engines] if self.batch % engines else [])
            seconds = np.array([layer_seconds(lay, device, params.alu_pp_share, add)
                               for _ in passes for lay, add in timed])
            nbytes = np.array([offchip_bytes(with_cascade(lay, add) if add is not None else lay, n, buf,
                                             params.activation_buffer_share, device.feature_buffer_kb * 1024)
                               for n in passes for lay, add in timed])
            conv = np.array([lay.kind in CONV_KINDS for _ in passes for lay, _ in timed], dtype=bool)
            self.cores.append((seconds, nbytes, conv, self._host_s(layers, device, params)))
        self.pcie_cap = pcie_cap_rps(list(layers), device, params)

    def _host_s(self, layers: Sequence[LayerCost], device: FpgaDevice, params: DpuParams) -> float:
        return host_call_fixed_s(list(layers), device, self.batch, params) + sum(
            host_time_s(lay, device, self.batch, params) for lay in layers if runs_on_host(lay, device))

    def fps(self, compute_efficiency: float, memory_efficiency: float, layer_overhead_cycles: float,
            call_overhead_us: float, misc_overlap: float) -> float:
        total = 0.0
        for seconds, nbytes, conv, host_s in self.cores:
            per_layer = (np.maximum(seconds / compute_efficiency, nbytes / (self.bandwidth_bps * memory_efficiency))
                         + layer_overhead_cycles / self.control_hz)
            dpu_s = call_overhead_us / 1e6 + overlapped(float(per_layer[conv].sum()), float(per_layer[~conv].sum()),
                                                        misc_overlap)
            total += self.batch / max(dpu_s, host_s / self.host_threads)
        return min(total, self.pcie_cap)


def error_factor(predicted: float, published: float) -> float:
    return max(predicted / published, published / predicted)


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(np.mean(np.log(values)))) if len(values) else float("nan")


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
