"""FPGA evaluator: prices a trial with the analytical DPU cost model (no board attached).

The result is always `estimated=True`. The model is deterministic, so p50 = p95 = p99 = the
latency of one call. Accuracy is not this module's business: the driver measures it on the
real int8 model variant.
"""

from __future__ import annotations

import hashlib
from typing import Any

import onnx

from tuner.config import TrialConfig
from tuner.costmodels.fpga.bands import band_for
from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.dpu_model import FpgaEstimate, LayerEstimate, estimate
from tuner.costmodels.graph.analyze import analyze_graph
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import field_error
from tuner.evaluators.base import EstimateEvaluator
from tuner.metrics import PerfResult

TOP_LAYERS = 10
# Graph analyses kept per process, keyed by model hash and input shapes: many trials share one
# model, and the analysis (shape inference over the whole graph) dominates a trial's cost.
_CACHE_SIZE = 8
_ANALYSES: dict[tuple[str, tuple], tuple[LayerCost, ...]] = {}


def evaluate_fpga(
    model_bytes: bytes,
    input_shapes: dict[str, list[int]],
    config: TrialConfig,
    device: FpgaDevice,
    all_layers: bool = False,
) -> PerfResult:
    """Estimate the speed of one FPGA configuration.

    Args:
        model_bytes: serialized ONNX model (fp32 or QDQ int8; the DPU runs it as int8).
        input_shapes: full shape of each graph input for one instance, batch dim 1 included.
        config: the trial; platform must be "fpga" and precision "int8".
        device: the catalog entry of config.device.
        all_layers: put every layer in details["layers"] (`tuner estimate --layers`), not only
            the TOP_LAYERS slowest.

    Returns:
        A PerfResult with estimated=True and the model's facts in `details`.

    Raises:
        TunerError: wrong platform, precision or device, invalid model, or a config the
            device cannot hold (e.g. more replicas than DPU cores).
    """
    if config.platform != "fpga":
        raise field_error(
            "platform", config.platform, "The FPGA evaluator prices FPGA trials only.",
            "Send the trial to the evaluator of its platform.",
        )
    if config.precision != "int8":
        raise field_error("precision", config.precision, "DPUs compute in int8 only.",
                          "Use precision int8 for FPGA trials.")
    if config.device is not None and config.device != device.key:
        raise field_error(
            "device", config.device, f"The trial names a device other than {device.key!r}.",
            "Pass the catalog entry the trial names.",
        )
    layers = analyse(model_bytes, input_shapes)
    result = estimate(list(layers), device, config.batch_size, config.replicas)
    return PerfResult(
        throughput_rps=result.throughput_rps,
        latency_p50_ms=result.latency_ms,
        latency_p95_ms=result.latency_ms,
        latency_p99_ms=result.latency_ms,
        estimated=True,
        details=_details(result, device, all_layers),
    )


def analyse(model_bytes: bytes, input_shapes: dict[str, list[int]]) -> tuple[LayerCost, ...]:
    """The graph analysis of a model, cached per (model hash, input shapes)."""
    shapes_key = tuple(sorted((name, tuple(shape)) for name, shape in input_shapes.items()))
    key = (hashlib.sha256(model_bytes).hexdigest(), shapes_key)
    if key not in _ANALYSES:
        try:
            model = onnx.load_from_string(model_bytes)
        except Exception as exc:  # protobuf raises DecodeError, onnx others
            raise field_error(
                "model_bytes", f"{len(model_bytes)} bytes", f"They must be an ONNX model ({exc}).",
                "Pass the serialized ONNX model (ModelProto.SerializeToString()).",
            ) from exc
        if len(_ANALYSES) >= _CACHE_SIZE:
            _ANALYSES.pop(next(iter(_ANALYSES)))
        _ANALYSES[key] = tuple(analyze_graph(model, input_shapes))
    return _ANALYSES[key]


def _details(result: FpgaEstimate, device: FpgaDevice, all_layers: bool) -> dict[str, Any]:
    timed = [layer for layer in result.per_layer if layer.time_us > 0]
    top = sorted(timed, key=lambda layer: layer.time_us, reverse=True)[:TOP_LAYERS]
    details = {
        "device": device.key,
        "dpu": f"{device.dpu} {device.arch}",
        "clock_mhz": device.clock_mhz,
        "peak_tops": round(device.peak_tops, 4),
        "gops_per_instance": result.total_gops_per_instance,
        "host_layers": list(result.host_layers),
        "limited_by": result.limited_by,
        "dpu_ms": result.dpu_ms,
        "host_ms": result.host_ms,
        "engines_used": result.engines_used,
        "power_w": result.power_w,
        "error_band": band_for(device.key).to_dict(),
        "top_layers": [_layer_dict(layer) for layer in top],
    }
    if all_layers:
        details["layers"] = [_layer_dict(layer) for layer in result.per_layer]
    return details


def _layer_dict(layer: LayerEstimate) -> dict[str, Any]:
    return {"name": layer.name, "op_type": layer.op_type, "kind": layer.kind, "macs": layer.macs,
            "time_us": round(layer.time_us, 2), "bound": layer.bound,
            "utilisation": round(layer.utilisation, 3),
            "offchip_bytes": int(layer.offchip_bytes)}


FPGA = EstimateEvaluator("fpga", estimate=evaluate_fpga, variant="int8")
