"""What-if estimates for GPUs the cluster does not have: a per-layer roofline. ESTIMATES ONLY.

For one call of `batch` instances on a device:

    layer time  = max(flops * batch / (peak * compute_efficiency),
                      (weights + activations * batch) * bytes_per_element / (bandwidth * MEMORY_EFFICIENCY))
    call time   = sum(layer times) + KERNEL_LAUNCH_US per timed layer
                  + (inputs + outputs) * batch * 4 bytes / host link        (float32 I/O, as served)
                  + call_overhead_ms

Timed layers are convolutions and matrix products (on the tensor peak of the precision; depthwise
convolutions and pools on the FP32 vector peak). Element-wise layers (BatchNorm, ReLU, Add) are
taken as fused into their producer, as ONNX Runtime and cuDNN fuse them. Layer MACs and element
counts come from `tuner.costmodels.graph.analyze.analyze_graph`. Each replica is assumed to have a GPU of its
own, so throughput = replicas * batch / call time.

`compute_efficiency` and `call_overhead_ms` are the two free parameters. Until a real GPU has been
measured they are the UNCALIBRATED_* constants below; `fit_calibration` fits them to a measured
card's rows (experiments/gpu_check.py does it), and a reviewed fit goes into the catalog's
`calibration` section. Every result says `estimated: True` and whether it was calibrated.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.costmodels.gpu.devices import GpuCalibration, GpuDevice, load_calibration, load_gpu_devices
from tuner.errors import TunerError, field_error
from tuner.metrics import PerfResult

if TYPE_CHECKING:  # tuner.costmodels.fpga's package imports pydantic: keep this module importable without it
    from tuner.costmodels.graph.layer_cost import LayerCost

# Not calibrated yet: calibrate with experiments/gpu_check.py results (fit_calibration). Share of the
# dense peak that convolution / matrix kernels reach, per precision; round guesses below the usual
# cuDNN figures for mid-size CNN layers (tensor paths reach a smaller share of their larger peak).
UNCALIBRATED_COMPUTE_EFFICIENCY: dict[str, float] = {"fp32": 0.6, "fp16": 0.35, "bf16": 0.35, "int8": 0.25}
# Not calibrated yet: calibrate with experiments/gpu_check.py results. Fixed cost of one call
# (framework dispatch, synchronisation), in ms.
UNCALIBRATED_CALL_OVERHEAD_MS = 0.05
MEMORY_EFFICIENCY = 0.75  # share of peak DRAM bandwidth streaming kernels reach (not fitted)
KERNEL_LAUNCH_US = 3.0  # per timed layer: launch and tail of one kernel (not fitted)
CONTEXT_MEMORY_GB = 0.5  # CUDA context, cuDNN/cuBLAS workspaces (not fitted)
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_TENSOR_KINDS = frozenset({"conv", "gemm"})
_VECTOR_KINDS = frozenset({"depthwise", "pool"})
_ANALYSES: dict[tuple[str, tuple], tuple[LayerCost, ...]] = {}


@dataclass(frozen=True)
class Roofline:
    """One call's predicted time, in ms, and what bounds it."""

    latency_ms: float
    layers_ms: float
    host_copy_ms: float
    overhead_ms: float
    compute_bound_share: float  # share of layer time in compute-bound layers
    timed_layers: int


@dataclass(frozen=True)
class CalibrationSample:
    """One measured row: a model's layers, the batch, and the measured per-call latency (ms)."""

    layers: tuple[LayerCost, ...]
    batch_size: int
    latency_ms: float


@dataclass(frozen=True)
class CalibrationFit:
    """The fitted factors and how well they explain the rows (relative RMS error)."""

    calibration: GpuCalibration
    rel_rmse: float
    samples: int


def gflops_per_instance(layers: Sequence[LayerCost]) -> float:
    """GFLOPs of one instance in convolutions and matrix products (1 MAC = 2 FLOPs)."""
    return sum(2 * layer.macs for layer in layers if layer.kind in _TENSOR_KINDS | {"depthwise"}) / 1e9


def roofline(layers: Sequence[LayerCost], device: GpuDevice, precision: str, batch_size: int,
             compute_efficiency: float, call_overhead_ms: float) -> Roofline:
    """The call time of the module docstring, for `batch_size` instances."""
    tensor_peak = device.peak_for(precision) * 1e12 * compute_efficiency
    vector_peak = device.peak_for("fp32") * 1e12 * compute_efficiency
    bandwidth = device.memory_bandwidth_gbps * 1e9 * MEMORY_EFFICIENCY
    bpe = BYTES_PER_ELEMENT[precision]
    total_s = compute_s = 0.0
    timed = 0
    io_elements = 0
    for layer in layers:
        io_elements += layer.graph_input_bytes + layer.graph_output_bytes
        if layer.kind not in _TENSOR_KINDS | _VECTOR_KINDS:
            continue
        flops = (2 if layer.kind in _TENSOR_KINDS | {"depthwise"} else 1) * layer.macs * batch_size
        t_compute = flops / (tensor_peak if layer.kind in _TENSOR_KINDS else vector_peak)
        t_memory = (layer.weight_bytes + (layer.input_bytes + layer.output_bytes) * batch_size) * bpe / bandwidth
        total_s += max(t_compute, t_memory)
        compute_s += t_compute if t_compute >= t_memory else 0.0
        timed += 1
    host_s = io_elements * 4 * batch_size / (device.host_link_gbps * 1e9)
    layers_ms = (total_s + timed * KERNEL_LAUNCH_US * 1e-6) * 1e3
    latency = layers_ms + host_s * 1e3 + call_overhead_ms
    return Roofline(latency, layers_ms, host_s * 1e3, call_overhead_ms,
                    compute_s / total_s if total_s > 0 else 0.0, timed)


def memory_estimate_gb(layers: Sequence[LayerCost], precision: str, batch_size: int) -> float:
    """Device memory one replica needs: weights, the largest layer's activations, the context."""
    bpe = BYTES_PER_ELEMENT[precision]
    weights = sum(layer.weight_bytes for layer in layers) * bpe
    activations = max((layer.input_bytes + layer.output_bytes for layer in layers), default=0) * bpe * batch_size
    return (weights + activations) / 1e9 + CONTEXT_MEMORY_GB


@functools.lru_cache(maxsize=1)
def _builtin_devices() -> dict[str, GpuDevice]:
    return load_gpu_devices()


@functools.lru_cache(maxsize=1)
def _builtin_calibration() -> dict[str, GpuCalibration]:
    return load_calibration()


def _analysis(model_bytes: bytes, input_shapes: dict[str, list[int]]) -> tuple[LayerCost, ...]:
    import onnx

    from tuner.costmodels.graph.analyze import analyze_graph

    key = (hashlib.sha256(model_bytes).hexdigest(), tuple(sorted((k, tuple(v)) for k, v in input_shapes.items())))
    if key not in _ANALYSES:
        try:
            model = onnx.load_from_string(model_bytes)
        except Exception as exc:  # protobuf raises DecodeError, onnx others
            raise field_error("model_bytes", f"{len(model_bytes)} bytes", f"They must be an ONNX model ({exc}).",
                              "Pass the serialized ONNX model.") from exc
        if len(_ANALYSES) >= 8:
            _ANALYSES.pop(next(iter(_ANALYSES)))
        _ANALYSES[key] = tuple(analyze_graph(model, input_shapes))
    return _ANALYSES[key]


def estimate_gpu(model_bytes: bytes, input_shapes: dict[str, list[int]], device_key: str, precision: str,
                 batch_size: int, replicas: int, *, devices: dict[str, GpuDevice] | None = None,
                 calibration: dict[str, GpuCalibration] | None = None) -> PerfResult:
    """Estimate one GPU configuration on a catalog device (always `estimated=True`).

    Args:
        model_bytes: serialized ONNX model (any precision variant: only its shape matters).
        input_shapes: full shape of each graph input for one instance, batch dim 1 included.
        device_key: a key of the GPU catalog, e.g. "t4".
        precision: fp32, fp16, bf16 or int8.
        batch_size: instances per call (>= 1).
        replicas: replicas, each on a GPU of its own (>= 1).
        devices: the catalog (default: the built-in one).
        calibration: fitted factors by precision (default: the catalog's; empty = uncalibrated).

    Raises:
        TunerError: unknown device, a precision the card lacks, bad sizes, or a batch whose
            estimated memory exceeds the card's ("out of memory (estimated)": infeasible).
    """
    devices = devices if devices is not None else _builtin_devices()
    if device_key not in devices:
        raise field_error("device", device_key, f"It must be a GPU catalog device: {sorted(devices)}.",
                          "Pick one, or add the card to tuner/catalog/gpu_devices.yaml with sourced figures.")
    for name, value in (("batch_size", batch_size), ("replicas", replicas)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise field_error(name, value, "It must be an integer >= 1.", "Fix the trial config.")
    device = devices[device_key]
    device.peak_for(precision)  # refuses a precision the card lacks
    cal = (calibration if calibration is not None else _builtin_calibration()).get(precision)
    eff = cal.compute_efficiency if cal else UNCALIBRATED_COMPUTE_EFFICIENCY[precision]
    overhead = cal.call_overhead_ms if cal else UNCALIBRATED_CALL_OVERHEAD_MS
    layers = _analysis(model_bytes, input_shapes)
    need_gb = memory_estimate_gb(layers, precision, batch_size)
    if need_gb > device.memory_gb:
        raise TunerError(
            f"Got batch_size {batch_size} at {precision} on {device_key}: out of memory (estimated): it needs "
            f"about {need_gb:.1f} GB of the card's {device.memory_gb:g} GB. Use a smaller batch or precision."
        )
    r = roofline(layers, device, precision, batch_size, eff, overhead)
    details: dict[str, Any] = {
        "estimated": True, "method": "roofline (what-if; no such GPU was measured)",
        "device": device_key, "description": device.description, "precision": precision,
        "peak_tflops": device.peak_for(precision), "memory_bandwidth_gbps": device.memory_bandwidth_gbps,
        "compute_efficiency": eff, "call_overhead_ms": overhead, "calibrated": cal is not None,
        "calibration": ({"measured_on": cal.measured_on, "source": cal.source} if cal else
                        "not calibrated yet: calibrate with experiments/gpu_check.py results"),
        "gflops_per_instance": round(gflops_per_instance(layers), 4),
        "layers_ms": round(r.layers_ms, 4), "host_copy_ms": round(r.host_copy_ms, 4),
        "compute_bound_share": round(r.compute_bound_share, 3), "timed_layers": r.timed_layers,
        "memory_estimate_gb": round(need_gb, 3), "layout": "one GPU per replica",
        "price_key": device.price_key, "unverified_figures": sorted(device.unverified),
    }
    return PerfResult(replicas * batch_size / (r.latency_ms / 1e3), r.latency_ms, r.latency_ms, r.latency_ms,
                      estimated=True, details=details)


def _rel_errors(samples: Sequence[CalibrationSample], device: GpuDevice, precision: str,
                eff: float) -> tuple[float, float, float]:
    """(best call overhead for `eff`, relative RMS error, mean compute-bound share)."""
    base = [roofline(s.layers, device, precision, s.batch_size, eff, 0.0) for s in samples]
    weights = [1.0 / s.latency_ms ** 2 for s in samples]
    overhead = sum(w * (s.latency_ms - b.latency_ms) for w, s, b in zip(weights, samples, base)) / sum(weights)
    overhead = max(0.0, overhead)
    errors = [((b.latency_ms + overhead) - s.latency_ms) / s.latency_ms for s, b in zip(samples, base)]
    share = sum(b.compute_bound_share for b in base) / len(base)
    return overhead, math.sqrt(sum(e * e for e in errors) / len(errors)), share


def fit_calibration(samples: Sequence[CalibrationSample], device: GpuDevice, precision: str,
                    measured_on: str, source: str) -> CalibrationFit:
    """Fit compute_efficiency and call_overhead_ms of `precision` to measured rows of `device`.

    Minimises the relative RMS error of the predicted per-call latency: a log-spaced grid over
    the efficiency in [0.001, 1], refined by golden-section search; for each efficiency the
    call overhead has a closed-form weighted least-squares value (clipped at 0).

    Raises:
        TunerError: fewer than 3 rows, or rows that are not compute-bound anywhere (they then
            say nothing about the efficiency: measure larger batches).
    """
    if len(samples) < 3:
        raise field_error("samples", len(samples), "A fit needs at least 3 measured rows.",
                          "Measure more batch sizes (experiments/gpu_check.py measures 1..256).")
    lo_log, hi_log = math.log(1e-3), 0.0
    grid = [lo_log + (hi_log - lo_log) * i / 120 for i in range(121)]
    scores = [_rel_errors(samples, device, precision, math.exp(g))[1] for g in grid]
    best = min(range(len(grid)), key=scores.__getitem__)
    a, b = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if _rel_errors(samples, device, precision, math.exp(c))[1] <= _rel_errors(samples, device, precision, math.exp(d))[1]:
            b = d
        else:
            a = c
    eff = math.exp((a + b) / 2)
    overhead, rmse, share = _rel_errors(samples, device, precision, eff)
    if share < 0.05:
        raise TunerError(
            f"Got {len(samples)} rows on {device.key} at {precision} that are memory- or overhead-bound "
            f"(compute-bound share {share:.3f}): they cannot calibrate the compute efficiency. Include "
            "larger batches of a compute-heavy model (e.g. resnet18 at batch 64-256)."
        )
    return CalibrationFit(GpuCalibration(precision, eff, overhead, measured_on, source), rmse, len(samples))
