"""The host side of a DPU call: which layers the DPU lacks, their time on the host CPU, and the
PCIe round trips and cap of a card (docs/fpga_model.md: "host call").

    host call   = host overhead + layers the DPU lacks (on the CPU) + PCIe transfers
"""

from __future__ import annotations

import math

from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.params import DpuParams
from tuner.costmodels.graph.layer_cost import LayerCost


def runs_on_host(layer: LayerCost, device: FpgaDevice) -> bool:
    """Whether the DPU of `device` lacks this layer (op type, a pool window too large, or an
    average pool that leaves padding out on a DPU that always counts it)."""
    if not layer.dpu_supported:
        return True
    if layer.pad_excluded and device.avg_pool_counts_padding:
        return True
    limit = device.pool_kernel_max
    return layer.kind == "pool" and limit is not None and max(layer.kernel_h, layer.kernel_w) > limit


def host_call_fixed_s(layers: list[LayerCost], device: FpgaDevice, batch: int, params: DpuParams) -> float:
    """Host-side seconds of one call before any host layer: the runtime's overhead, and on a PCIe
    card the round trip of the graph's inputs and outputs."""
    host_s = params.host_call_overhead_ms[device.host_link] / 1e3
    if device.host_link == "pcie":
        io_bytes = batch * sum(lay.graph_input_bytes + lay.graph_output_bytes for lay in layers)
        host_s += 2 * params.pcie_latency_us / 1e6 + io_bytes / (params.pcie_gbps * 1e9)
    return host_s


def pcie_cap_rps(layers: list[LayerCost], device: FpgaDevice, params: DpuParams) -> float:
    """The inferences per second a PCIe card's host link can carry (inf for a board with its own CPU)."""
    if device.host_link != "pcie":
        return math.inf
    moved = sum(link_bytes(layer, device) for layer in layers)
    return params.pcie_gbps * 1e9 / moved if moved else math.inf


def host_time_s(layer: LayerCost, device: FpgaDevice, batch: int, params: DpuParams) -> float:
    """Seconds one call spends on a layer the DPU lacks (host CPU, plus PCIe round trip)."""
    link = device.host_link
    work = batch * (layer.macs + layer.input_bytes + layer.output_bytes)
    time_s = params.host_layer_overhead_us / 1e6 + work / params.host_ops_per_s[link]
    if link == "pcie":
        moved = batch * (layer.input_bytes + layer.output_bytes)
        time_s += 2 * params.pcie_latency_us / 1e6 + moved / (params.pcie_gbps * 1e9)
    return time_s


def link_bytes(layer: LayerCost, device: FpgaDevice) -> int:
    """Bytes per instance crossing the host link for a layer: graph I/O and host-layer data."""
    host = layer.input_bytes + layer.output_bytes if runs_on_host(layer, device) else 0
    return layer.graph_input_bytes + layer.graph_output_bytes + host
