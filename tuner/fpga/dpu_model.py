"""First analytical cost model of a Vitis AI DPU: per-layer roofline, batch engines, cores.

Every number it returns is an estimate. The shape of the model follows hardware.md C.5:

    layer time  = max(compute, off-chip memory) + per-layer overhead
    compute     = ops / (2 * PP * ICP * OCP * f * tiling utilisation * efficiency)
    memory      = (weights + activations that do not fit on chip) / (bandwidth * efficiency)
    call time   = call overhead + host-link transfers + host-CPU layers + DPU passes

A core with E batch engines runs up to E instances side by side, so a batch of B takes
ceil(B / E) passes; each replica is one DPU core; the cores share the off-chip bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.errors import field_error
from tuner.fpga.devices import FpgaDevice
from tuner.fpga.graph import LayerCost

# ---------------------------------------------------------------------------------------------
# Free parameters. First plausible values, NOT fitted to anything: they will be calibrated on
# /work/shared/reference/fpga_calibration.csv (issue "FPGA cost model"). Keep them all here.
# ---------------------------------------------------------------------------------------------
# Share of the tiled peak a dense conv reaches (pipeline fill, load/save not fully overlapped).
COMPUTE_EFFICIENCY = 0.85
# Share of theoretical off-chip bandwidth a DPU's bursts achieve.
MEMORY_EFFICIENCY = 0.70
# Pixel parallelism of the ALU (depthwise conv, pooling, element-wise) as a share of PP:
# PG338 "The parallelism of depthwise convolution is half that of the pixel parallelism".
ALU_PP_SHARE = 0.5
# Share of a core's on-chip banks that can hold a layer's activations (the rest: weight tiles).
ACTIVATION_BUFFER_SHARE = 0.5
# Instruction fetch, set-up and pipeline drain of one DPU layer.
LAYER_OVERHEAD_US = 5.0
# Runtime cost of one model call (VART/XRT job submission, cache flush, completion interrupt).
CALL_OVERHEAD_MS = {"shared_ddr": 0.3, "pcie": 0.4}
# Host CPU rate for layers the DPU lacks, in simple operations (MACs + bytes touched) per
# second on one host core: an embedded Arm core (edge boards) vs a server x86 core (cards).
HOST_OPS_PER_S = {"shared_ddr": 0.5e9, "pcie": 2.0e9}
# Switching a subgraph between DPU and CPU (sync, cache maintenance) per host layer per call.
HOST_LAYER_OVERHEAD_US = 50.0
# Effective host<->card PCIe bandwidth and per-transfer latency (Gen3 x16 in practice; not from
# hardware.md). Edge boards share DDR with the CPU and pay no transfer.
PCIE_GBPS = 12.0
PCIE_LATENCY_US = 10.0
# Ops the DPU compiler fuses into the producing conv / element-wise op: no time of their own.
FUSED_OP_TYPES = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish", "BatchNormalization",
})


@dataclass(frozen=True)
class LayerEstimate:
    """Estimated time of one layer within one model call (all passes of the batch).

    Attributes:
        bound: "compute", "memory" (off-chip bandwidth) or "host" (runs on the CPU).
    """

    name: str
    op_type: str
    kind: str
    macs: int
    time_us: float
    bound: str


@dataclass(frozen=True)
class FpgaEstimate:
    """Estimated speed of a model on an FPGA DPU.

    Attributes:
        throughput_rps: inferences per second over all replicas (DPU cores).
        latency_ms: time of one call of `batch_size` inferences on one core.
        power_w: board power when the catalog has a sourced figure, else None.
        per_layer: per-layer times of one call on the slowest core used, in graph order.
        host_layers: names of the layers that run on the host CPU.
        total_gops_per_instance: conv + gemm operations (2 per MAC) of one instance, in G.
        limited_by: what caps throughput: "dpu", "memory_bandwidth" or "pcie".
    """

    throughput_rps: float
    latency_ms: float
    power_w: float | None
    per_layer: tuple[LayerEstimate, ...]
    host_layers: tuple[str, ...]
    total_gops_per_instance: float
    limited_by: str


def estimate(
    layers: list[LayerCost], device: FpgaDevice, batch_size: int, replicas: int
) -> FpgaEstimate:
    """Estimate throughput and latency of a model (as analysed layers) on a DPU.

    Args:
        layers: per-layer costs of one instance, from `tuner.fpga.graph.analyze_graph`.
        device: the FPGA board and its DPU build.
        batch_size: inferences per model call (>= 1).
        replicas: DPU cores serving in parallel (1..device.cores).

    Returns:
        The estimate (deterministic: the same inputs give the same numbers).

    Raises:
        TunerError: batch_size < 1, or replicas outside 1..device.cores.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise field_error("batch_size", batch_size, "It must be an integer >= 1.",
                          "Use a batch size of at least 1.")
    if not isinstance(replicas, int) or not 1 <= replicas <= device.cores:
        raise field_error(
            "replicas", replicas,
            f"An FPGA replica is one DPU core and {device.key} has {device.cores}.",
            f"Use 1 to {device.cores} replicas.",
        )
    engines = sorted(device.batch_engines, reverse=True)[:replicas]
    calls = [_call(layers, device, batch_size, e) for e in engines]
    slowest = max(calls, key=lambda c: c.time_s)

    throughput_rps = sum(batch_size / c.time_s for c in calls)
    limited_by = "dpu"
    dram_rate = sum(c.offchip_bytes / c.time_s for c in calls)
    dram_cap = device.memory_bandwidth_gbps * 1e9 * MEMORY_EFFICIENCY
    if dram_rate > dram_cap:
        throughput_rps *= dram_cap / dram_rate
        limited_by = "memory_bandwidth"
    if device.host_link == "pcie":
        link_bytes = sum(_link_bytes(layer) for layer in layers)
        pcie_cap = PCIE_GBPS * 1e9 / link_bytes if link_bytes else math.inf
        if throughput_rps > pcie_cap:
            throughput_rps, limited_by = pcie_cap, "pcie"

    macs = sum(layer.macs for layer in layers if layer.kind in ("conv", "depthwise", "gemm"))
    return FpgaEstimate(
        throughput_rps=throughput_rps,
        latency_ms=slowest.time_s * 1e3,
        power_w=device.power_w,
        per_layer=slowest.per_layer,
        host_layers=tuple(layer.name for layer in layers if not layer.dpu_supported),
        total_gops_per_instance=2 * macs / 1e9,
        limited_by=limited_by,
    )


@dataclass(frozen=True)
class _Call:
    time_s: float
    offchip_bytes: float
    per_layer: tuple[LayerEstimate, ...]


def _call(layers: list[LayerCost], device: FpgaDevice, batch: int, engines: int) -> _Call:
    """One call of `batch` instances on a core with `engines` batch engines."""
    passes = [engines] * (batch // engines) + ([batch % engines] if batch % engines else [])
    per_layer, total_s, offchip = [], CALL_OVERHEAD_MS[device.host_link] / 1e3, 0.0
    if device.host_link == "pcie":
        io_bytes = batch * sum(lay.graph_input_bytes + lay.graph_output_bytes for lay in layers)
        total_s += 2 * PCIE_LATENCY_US / 1e6 + io_bytes / (PCIE_GBPS * 1e9)
    for layer in layers:
        if not layer.dpu_supported:
            time_s, bound = _host_time_s(layer, device, batch), "host"
        else:
            time_s, bound = 0.0, "compute"
            for n in passes:
                t, b, nbytes = _dpu_layer(layer, device, n)
                time_s, offchip = time_s + t, offchip + nbytes
                bound = b if t > 0 else bound
        total_s += time_s
        per_layer.append(
            LayerEstimate(layer.name, layer.op_type, layer.kind, layer.macs, time_s * 1e6, bound)
        )
    return _Call(total_s, offchip, tuple(per_layer))


def _dpu_layer(layer: LayerCost, device: FpgaDevice, n: int) -> tuple[float, str, float]:
    """(seconds, bound, off-chip bytes) of one pass of `n` instances through a DPU layer."""
    if layer.kind == "other" or layer.op_type in FUSED_OP_TYPES:
        return 0.0, "compute", 0.0
    f_hz = device.clock_mhz * 1e6
    alu_pp = max(1.0, device.pp * ALU_PP_SHARE)
    if layer.kind in ("conv", "gemm"):
        groups = max(1, layer.groups)
        util = (
            _fill(layer.c_in // groups, device.icp)
            * _fill(layer.c_out // groups, device.ocp)
            * _fill(layer.w_out, device.pp)
        )
        ops_per_s = 2 * device.pp * device.icp * device.ocp * f_hz * util
        compute_s = 2 * layer.macs / (ops_per_s * COMPUTE_EFFICIENCY)
    elif layer.kind == "depthwise":
        util = _fill(layer.c_out, device.icp) * _fill(layer.w_out, int(alu_pp))
        ops_per_s = 2 * alu_pp * device.icp * f_hz * util
        compute_s = 2 * layer.macs / (ops_per_s * COMPUTE_EFFICIENCY)
    else:  # pool, eltwise: one element operation per ALU lane per cycle
        compute_s = layer.macs / (alu_pp * device.icp * f_hz * COMPUTE_EFFICIENCY)
    activations = (layer.input_bytes + layer.output_bytes) * n
    on_chip = ACTIVATION_BUFFER_SHARE * device.onchip_buffer_kb * 1024
    nbytes = layer.weight_bytes + (activations if activations > on_chip else 0)
    memory_s = nbytes / (device.memory_bandwidth_gbps * 1e9 * MEMORY_EFFICIENCY)
    bound = "compute" if compute_s >= memory_s else "memory"
    return max(compute_s, memory_s) + LAYER_OVERHEAD_US / 1e6, bound, float(nbytes)


def _fill(size: int, lanes: int) -> float:
    """Share of `lanes` doing useful work when `size` items are tiled over them (ceil effect)."""
    if size <= 0 or lanes <= 1:
        return 1.0
    return size / (lanes * math.ceil(size / lanes))


def _host_time_s(layer: LayerCost, device: FpgaDevice, batch: int) -> float:
    """Seconds one call spends on a layer the DPU lacks (host CPU, plus PCIe round trip)."""
    work = batch * (layer.macs + layer.input_bytes + layer.output_bytes)
    time_s = HOST_LAYER_OVERHEAD_US / 1e6 + work / HOST_OPS_PER_S[device.host_link]
    if device.host_link == "pcie":
        moved = batch * (layer.input_bytes + layer.output_bytes)
        time_s += 2 * PCIE_LATENCY_US / 1e6 + moved / (PCIE_GBPS * 1e9)
    return time_s


def _link_bytes(layer: LayerCost) -> int:
    """Bytes per instance crossing the host link for a layer: graph I/O and host-layer data."""
    host = 0 if layer.dpu_supported else layer.input_bytes + layer.output_bytes
    return layer.graph_input_bytes + layer.graph_output_bytes + host
