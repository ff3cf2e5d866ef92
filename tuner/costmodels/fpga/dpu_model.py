"""Analytical cost model of a Vitis AI DPU: per-layer roofline, batch engines, cores, host.

Every number it returns is an estimate. docs/fpga_model.md explains the model in a page:

    DPU layer   = max(compute, off-chip memory) + layer overhead   (see dpu_layers)
    DPU call    = call overhead + sum of its layers, ceil(batch / engines) passes
    host call   = host overhead + layers the DPU lacks (on the CPU) + PCIe transfers
    latency     = DPU call + host call
    throughput  = sum over cores of batch / max(DPU call, host call / host threads)
                  (threads pipeline them; a PCIe card's x86 host spreads its part over threads)

The free parameters (efficiencies, overheads) come from tuner.costmodels.fpga.params; all hardware
figures from the device catalog. Per-layer DPU times come from `dpu_layers`, the host side from
`host`. Nothing here depends on the architecture's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.dpu_layers import CONV_KINDS, cascaded_adds, dpu_pass, overlapped
from tuner.costmodels.fpga.host import host_call_fixed_s, host_time_s, pcie_cap_rps, runs_on_host
from tuner.costmodels.fpga.params import DpuParams, load_params
from tuner.costmodels.graph.layer_cost import LayerCost
from tuner.errors import field_error

BOUNDS = ("compute", "memory", "overhead", "host")
# What caps a configuration's throughput, by the bound that takes most of a call's time.
_LIMITS = {"compute": "dpu", "memory": "memory_bandwidth", "overhead": "layer_overhead",
           "host": "host_cpu"}


@dataclass(frozen=True)
class LayerEstimate:
    """Estimated time of one layer within one model call (all passes of the batch).

    Attributes:
        bound: "compute", "memory" (off-chip bandwidth), "overhead" (the fixed per-layer cost
            exceeds both) or "host" (runs on the host CPU).
        utilisation: share of the MAC lanes doing useful work (tiling), 0 where not a MAC layer.
        offchip_bytes: bytes the layer moves to and from DDR/HBM in one call.
    """

    name: str
    op_type: str
    kind: str
    macs: int
    time_us: float
    bound: str
    utilisation: float = 0.0
    offchip_bytes: float = 0.0


@dataclass(frozen=True)
class FpgaEstimate:
    """Estimated speed of a model on an FPGA DPU.

    Attributes:
        throughput_rps: inferences per second over all replicas (DPU cores).
        latency_ms: time of one call of `batch_size` inferences on one core, host part included.
        dpu_ms / host_ms: the DPU and host-side parts of that call.
        power_w: board power when the catalog has a sourced figure, else None.
        per_layer: per-layer times of one call on the slowest core used, in graph order.
        host_layers: names of the layers that run on the host CPU.
        total_gops_per_instance: conv + gemm operations (2 per MAC) of one instance, in G.
        limited_by: "dpu" (compute), "memory_bandwidth", "layer_overhead", "host_cpu" or "pcie".
        engines_used: batch engines busy per core (min(batch, engines)), for the largest core.
    """

    throughput_rps: float
    latency_ms: float
    dpu_ms: float
    host_ms: float
    power_w: float | None
    per_layer: tuple[LayerEstimate, ...]
    host_layers: tuple[str, ...]
    total_gops_per_instance: float
    limited_by: str
    engines_used: int


def estimate(
    layers: list[LayerCost], device: FpgaDevice, batch_size: int, replicas: int,
    params: DpuParams | None = None,
) -> FpgaEstimate:
    """Estimate throughput and latency of a model (as analysed layers) on a DPU.

    Args:
        layers: per-layer costs of one instance, from `tuner.costmodels.graph.analyze.analyze_graph`.
        device: the FPGA board and its DPU build.
        batch_size: inferences per model call (>= 1).
        replicas: DPU cores serving in parallel (1..device.cores); they share the off-chip
            bandwidth.
        params: the model's free parameters; None uses the fitted ones (dpu_params.yaml). Either
            way the device's own calibration (`DpuParams.boards`) applies where it has one.

    Returns:
        The estimate (deterministic: the same inputs give the same numbers).

    Raises:
        TunerError: batch_size < 1, or replicas outside 1..device.cores.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise field_error("batch_size", batch_size, "It must be an integer >= 1.",
                          "Use a batch size of at least 1.")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= device.cores:
        raise field_error(
            "replicas", replicas,
            f"An FPGA replica is one DPU core and {device.key} has {device.cores}.",
            f"Use 1 to {device.cores} replicas (or 'max').",
        )
    params = (params or load_params()).for_device(device.key)
    engines = sorted(device.batch_engines, reverse=True)[:replicas]
    calls = [_call(layers, device, batch_size, e, replicas, params) for e in engines]
    slowest = max(calls, key=lambda c: c.dpu_s + c.host_s)

    threads = params.host_threads[device.host_link]
    throughput_rps = sum(batch_size / max(c.dpu_s, c.host_s / threads) for c in calls)
    limited_by = "host_cpu" if slowest.host_s / threads > slowest.dpu_s else _LIMITS[_dominant(slowest)]
    cap = pcie_cap_rps(layers, device, params)
    if throughput_rps > cap:
        throughput_rps, limited_by = cap, "pcie"

    macs = sum(layer.macs for layer in layers if layer.kind in ("conv", "depthwise", "gemm"))
    return FpgaEstimate(
        throughput_rps=throughput_rps,
        latency_ms=(slowest.dpu_s + slowest.host_s) * 1e3,
        dpu_ms=slowest.dpu_s * 1e3,
        host_ms=slowest.host_s * 1e3,
        power_w=device.power_w,
        per_layer=slowest.per_layer,
        host_layers=tuple(layer.name for layer in layers if runs_on_host(layer, device)),
        total_gops_per_instance=2 * macs / 1e9,
        limited_by=limited_by,
        engines_used=min(batch_size, engines[0]),
    )


@dataclass(frozen=True)
class _Call:
    dpu_s: float
    host_s: float
    per_layer: tuple[LayerEstimate, ...]


def _call(layers: list[LayerCost], device: FpgaDevice, batch: int, engines: int, busy_cores: int,
          params: DpuParams) -> _Call:
    """One call of `batch` instances on a core with `engines` batch engines."""
    passes = [engines] * (batch // engines) + ([batch % engines] if batch % engines else [])
    dpu_s = params.call_overhead_us / 1e6
    host_s = host_call_fixed_s(layers, device, batch, params)
    bandwidth = device.memory_bandwidth_gbps * 1e9 * params.memory_efficiency / busy_cores
    cascaded = cascaded_adds(layers, device)
    into = {conv: layers[add] for add, conv in cascaded.items()}
    per_layer = []
    conv_s = misc_s = 0.0
    for i, layer in enumerate(layers):
        if runs_on_host(layer, device):
            time_s = host_time_s(layer, device, batch, params)
            host_s += time_s
            per_layer.append(LayerEstimate(layer.name, layer.op_type, layer.kind, layer.macs,
                                           time_s * 1e6, "host"))
            continue
        if i in cascaded:  # runs inside its conv's pass (timed there)
            per_layer.append(LayerEstimate(layer.name, layer.op_type, layer.kind, layer.macs, 0.0, "compute"))
            continue
        time_s, nbytes, bound, util = 0.0, 0.0, "compute", 0.0
        for n in passes:
            t, b, bound, util = dpu_pass(layer, device, n, bandwidth, params, into.get(i))
            time_s, nbytes = time_s + t, nbytes + b
        if layer.kind in CONV_KINDS:
            conv_s += time_s
        else:
            misc_s += time_s
        per_layer.append(LayerEstimate(layer.name, layer.op_type, layer.kind, layer.macs,
                                       time_s * 1e6, bound, util, nbytes))
    dpu_s += overlapped(conv_s, misc_s, params.misc_overlap)
    return _Call(dpu_s, host_s, tuple(per_layer))


def _dominant(call: _Call) -> str:
    """The bound that accounts for most of a call's DPU time."""
    totals = {b: 0.0 for b in BOUNDS}
    for layer in call.per_layer:
        totals[layer.bound] += layer.time_us
    totals["host"] = 0.0
    return max(totals, key=lambda b: totals[b])
