"""Fitting the DPU model's free parameters on published figures, and validating the fit honestly.

Two levels:

- **shared** (`FITTED`): compute and memory efficiency, per-layer and per-call overheads, fitted
  on every row given, then the edge boards' host overhead on their 1-thread latencies and the
  PCIe host's rate for layers the DPU lacks on the PCIe rows that have such layers;
- **per board** (`BOARD_FITTED`): a board with published figures gets its own compute
  efficiency, memory efficiency and layer overhead, fitted on its rows with a pull towards the
  shared values (weight `BOARD_PRIOR_WEIGHT` on the log ratio), so a board with few rows stays
  near them. Where the catalog marks a board's memory bandwidth unverified (an assumed figure),
  its memory efficiency may exceed 1: the fit then measures the effective bandwidth the
  assumption got wrong. A sourced bandwidth caps it at 1. Nothing is fitted per model.

`cross_validate` says what to expect for a model or a board the fit did not see: each row is
predicted by a fit that left it out (the shared level without its whole board; the board level
without the row), and each board's rows by a fit that never saw the board ("uncalibrated").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tuner.costmodels.fpga.calibration import (
    CalibrationRow,
    RowTerms,
    error_factor,
    geomean,
    predict,
    predict_fps,
)
from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.host import runs_on_host
from tuner.costmodels.fpga.params import BOARD_FITTED, DpuParams
from tuner.costmodels.graph.layer_cost import LayerCost

FITTED = ("compute_efficiency", "memory_efficiency", "layer_overhead_cycles", "call_overhead_us", "misc_overlap")
_BOUNDS = {"compute_efficiency": (0.2, 1.0), "memory_efficiency": (0.05, 1.0),
           "layer_overhead_cycles": (1.0, 60000.0), "call_overhead_us": (1.0, 3000.0), "misc_overlap": (0.0, 1.0)}
_SCALES = {"compute_efficiency": 0.2, "memory_efficiency": 0.2,
           "layer_overhead_cycles": 3000.0, "call_overhead_us": 100.0, "misc_overlap": 0.2}
PRIOR_WEIGHT = 0.05  # pulls shared parameters the rows cannot identify back to their prior
BOARD_PRIOR_WEIGHT = 0.5  # pulls a board's own values towards the shared ones (per log unit)
UNVERIFIED_MEMORY_EFFICIENCY_MAX = 4.0
HOST_RATE_MIN, HOST_RATE_MAX = 0.02e9, 10e9  # host ops/s bounds of the PCIe host-rate fit
HOST_RATE_GRID = 121  # log-spaced points between them (5% apart)

Layers = dict[str, Sequence[LayerCost]]


def _terms(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
           params: DpuParams) -> list[RowTerms]:
    return [RowTerms(r, layers[r.arch], devices, params) for r in rows]


def fit_shared(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice], start: DpuParams,
               log: Callable[[str], None] = lambda _: None) -> DpuParams:
    """Fit the FITTED parameters to the rows' throughput (no board level), then the edge host
    overhead to their latency and the PCIe host rate to the rows with host layers, twice (a
    host-bound row's throughput depends on both): least squares on log errors (scipy, bounded,
    three starts; the host rate on a log grid), with a weak pull towards the prior so that what
    the rows cannot identify stays at its prior."""
    params = start.replace(boards={})
    lat_rows = [r for r in rows if r.lat_ms and devices[r.device].host_link == "shared_ddr"]
    host_rows = [r for r in rows if devices[r.device].host_link == "pcie"
                 and any(runs_on_host(lay, devices[r.device]) for lay in layers[r.arch])]
    for _ in range(2 if lat_rows or host_rows else 1):
        params = _fit_throughput(rows, layers, devices, params, start, log)
        if lat_rows:
            params = _fit_host_overhead(lat_rows, layers, devices, params)
        if host_rows:
            params = _fit_host_rate(host_rows, layers, devices, params, start)
    fitted = [*FITTED, *(["host_call_overhead_ms.shared_ddr"] if lat_rows else []),
              *(["host_ops_per_s.pcie"] if host_rows else [])]
    return params.replace(fitted=tuple(fitted))


def _fit_throughput(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
                    params: DpuParams, start: DpuParams, log: Callable[[str], None]) -> DpuParams:
    from scipy.optimize import least_squares

    terms = _terms(rows, layers, devices, params)
    published = np.log([r.fps_multi for r in rows])

    def residuals(x: np.ndarray) -> np.ndarray:
        errs = np.log([t.fps(*x) for t in terms]) - published
        prior = [PRIOR_WEIGHT * (v - getattr(start, n)) / _SCALES[n] for n, v in zip(FITTED, x)]
        return np.concatenate([errs, prior])

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
    return params.replace(**{name: float(v) for name, v in zip(FITTED, best.x)})


def fit_board(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
              shared: DpuParams) -> dict[str, float]:
    """A board's own BOARD_FITTED values from its rows, pulled towards the shared ones."""
    from scipy.optimize import least_squares

    device = devices[rows[0].device]
    terms = _terms(rows, layers, devices, shared)
    published = np.log([r.fps_multi for r in rows])
    base = np.array([getattr(shared, n) for n in BOARD_FITTED])
    lower = np.array([_BOUNDS[n][0] for n in BOARD_FITTED])
    upper = np.array([_BOUNDS[n][1] for n in BOARD_FITTED])
    if "memory_bandwidth_gbps" in device.unverified:
        upper[BOARD_FITTED.index("memory_efficiency")] = UNVERIFIED_MEMORY_EFFICIENCY_MAX
    fixed = {n: getattr(shared, n) for n in FITTED if n not in BOARD_FITTED}

    def fps(t: RowTerms, x: np.ndarray) -> float:
        values = {**fixed, **dict(zip(BOARD_FITTED, x))}
        return t.fps(*(values[n] for n in FITTED))

    def residuals(x: np.ndarray) -> np.ndarray:
        errs = np.log([fps(t, x) for t in terms]) - published
        return np.concatenate([errs, BOARD_PRIOR_WEIGHT * np.log(x / base)])

    x0 = np.clip(base, lower + 1e-9, upper - 1e-9)
    result = least_squares(residuals, x0, bounds=(lower, upper), x_scale="jac", diff_step=1e-3)
    return {n: float(v) for n, v in zip(BOARD_FITTED, result.x)}


def calibrate(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice], start: DpuParams,
              log: Callable[[str], None] = lambda _: None) -> DpuParams:
    """The shipped parameters: the shared level on every row, then each board's own on its rows."""
    shared = fit_shared(rows, layers, devices, start, log)
    boards = {key: fit_board(group, layers, devices, shared) for key, group in by_device(rows).items()}
    params = shared.replace(boards=boards)
    factors = [predict(r, layers[r.arch], devices, params).fps_factor for r in rows]
    return params.replace(fit={
        "rows": [f"{r.row_id} {r.device} {r.model}" for r in rows],
        "method": "scipy.optimize.least_squares (bounded, 3 starts) on log(predicted / published multi-thread "
                  f"fps), prior weight {PRIOR_WEIGHT}; host_call_overhead_ms.shared_ddr then on log 1-thread "
                  f"latency; host_ops_per_s.pcie on the PCIe rows with host layers ({HOST_RATE_GRID}-point "
                  f"log grid); per board {list(BOARD_FITTED)} on its rows, pulled to the shared values with weight "
                  f"{BOARD_PRIOR_WEIGHT} per log unit",
        "fps_geomean_error_factor": round(geomean(factors), 4),
        "fps_worst_error_factor": round(max(factors), 4),
        "in_sample": "these errors are in-sample; experiments/fpga_validation.py reports held-out ones",
    })


def by_device(rows: Sequence[CalibrationRow]) -> dict[str, list[CalibrationRow]]:
    out: dict[str, list[CalibrationRow]] = {}
    for row in rows:
        out.setdefault(row.device, []).append(row)
    return out


@dataclass(frozen=True)
class HeldOut:
    """A row predicted by fits that did not see it.

    Attributes:
        calibrated_fps: the board's own level fitted on its other rows (the shared level
            without this board): what a user's new model on a calibrated board gets.
        uncalibrated_fps: the shared level alone, fitted without this board: what a board with
            no published figures gets.
    """

    row: CalibrationRow
    calibrated_fps: float
    uncalibrated_fps: float

    @property
    def calibrated_factor(self) -> float:
        return error_factor(self.calibrated_fps, self.row.fps_multi)

    @property
    def uncalibrated_factor(self) -> float:
        return error_factor(self.uncalibrated_fps, self.row.fps_multi)


def cross_validate(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
                   start: DpuParams, log: Callable[[str], None] = lambda _: None) -> list[HeldOut]:
    """Every row predicted by fits that left it out (see the module docstring)."""
    out = []
    for key, group in by_device(rows).items():
        others = [r for r in rows if r.device != key]
        shared = fit_shared(others, layers, devices, start)
        for row in group:
            rest = [r for r in group if r is not row]
            own = shared.replace(boards={key: fit_board(rest, layers, devices, shared)}) if rest else shared
            calibrated = predict(row, layers[row.arch], devices, own).fps
            uncalibrated = predict(row, layers[row.arch], devices, shared).fps
            out.append(HeldOut(row, calibrated, uncalibrated))
        factors = [h.calibrated_factor for h in out if h.row.device == key]
        log(f"  {key:8s} {len(group):2d} rows: held-out models x{geomean(factors):.2f} (worst x{max(factors):.2f}), "
            f"board left out x{geomean([h.uncalibrated_factor for h in out if h.row.device == key]):.2f}")
    return out


def _fit_host_overhead(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
                       params: DpuParams) -> DpuParams:
    from scipy.optimize import least_squares

    def with_value(x: np.ndarray) -> DpuParams:
        return params.replace(host_call_overhead_ms={**params.host_call_overhead_ms, "shared_ddr": float(x[0])})

    def residuals(x: np.ndarray) -> np.ndarray:
        p = with_value(x)
        return np.array([math.log(predict(r, layers[r.arch], devices, p).lat_ms / r.lat_ms)
                         for r in rows if r.lat_ms])

    x0 = [params.host_call_overhead_ms["shared_ddr"]]
    return with_value(least_squares(residuals, x0, bounds=([0.0], [20.0])).x)


def _fit_host_rate(rows: Sequence[CalibrationRow], layers: Layers, devices: dict[str, FpgaDevice],
                   params: DpuParams, start: DpuParams) -> DpuParams:
    """The PCIe host's rate for layers the DPU lacks, on the throughput of the rows that have
    such layers (the only rows it moves), weakly pulled to its prior. A grid in log space, not a
    gradient: a row is flat in the rate until its host part is the bottleneck."""
    prior = math.log(start.host_ops_per_s["pcie"])

    def with_rate(rate: float) -> DpuParams:
        return params.replace(host_ops_per_s={**params.host_ops_per_s, "pcie": rate})

    def cost(log_rate: float) -> float:
        p = with_rate(math.exp(log_rate))
        errs = [math.log(predict_fps(r, layers[r.arch], devices, p) / r.fps_multi) for r in rows]
        return sum(e * e for e in errs) + (PRIOR_WEIGHT * (log_rate - prior)) ** 2

    grid = np.linspace(math.log(HOST_RATE_MIN), math.log(HOST_RATE_MAX), HOST_RATE_GRID)
    return with_rate(float(math.exp(min(grid, key=cost))))
