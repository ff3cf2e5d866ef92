"""Time of one DPU layer: tiles of the MAC array or the misc engines, off-chip bytes, cascades.

    DPU layer   = max(compute, off-chip memory) + layer overhead
    compute     = tiled cycles / (f * compute_efficiency)
                  tiled cycles = ceil(C_in/ICP) * ceil(C_out/OCP) * H_out * ceil(W_out/PP) * kh * kw
                  (depthwise: one channel per lane, pixel parallelism PP * alu_pp_share)
    memory      = off-chip bytes / (board bandwidth * memory_efficiency / busy cores)
                  bytes = weights (once per pass: batch engines share them) + the activations
                  of every instance, + re-reads when neither fits the on-chip banks
                  (an add cascaded behind a conv, DPUCVDX8H: timed in that conv's pass)

`tuner.costmodels.fpga.dpu_model` sums these into calls; `calibration` vectorises the same
functions for the fit. Nothing here depends on the architecture's name.
"""

from __future__ import annotations

import dataclasses
import math

from tuner.costmodels.fpga.devices import FpgaDevice
from tuner.costmodels.fpga.host import runs_on_host
from tuner.costmodels.fpga.params import DpuParams
from tuner.costmodels.graph.layer_cost import LayerCost

# Ops the DPU compiler fuses into the producing conv / element-wise op: no time of their own.
FUSED_OP_TYPES = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish", "BatchNormalization",
})
# Element-wise ops a cascaded element-wise engine runs (DPUCVDX8H prototxt: elew_type add).
CASCADE_OP_TYPES = frozenset({"Add"})
CONV_KINDS = ("conv", "gemm")  # the MAC array's layers; the others run on the misc engines


def cascaded_adds(layers: list[LayerCost], device: FpgaDevice) -> dict[int, int]:
    """{index of an element-wise add: index of the conv whose pass it runs in}, on a DPU whose
    element-wise engine is cascaded behind its conv engine (`device.conv_eltwise_cascade`).

    The cascade takes the conv's output as it is produced (the DPUCVDX8H prototxt's
    eltwise_engine `conv_cascade`; its only element-wise type is add). A LayerCost carries no
    graph edges, so an add is taken to be fed by the conv just before it in graph order (free
    and fused ops in between skipped) when the two have outputs of the same size and the add
    reads two maps of that size: a residual block's last conv (or its projection shortcut) and
    its add. Each conv takes at most one add; a host layer in between breaks the chain.
    """
    if not device.conv_eltwise_cascade:
        return {}
    cascaded: dict[int, int] = {}
    previous: int | None = None
    for i, layer in enumerate(layers):
        if runs_on_host(layer, device):
            previous = None
            continue
        if layer.kind == "other" or layer.op_type in FUSED_OP_TYPES:
            continue
        if (previous is not None and layer.op_type in CASCADE_OP_TYPES and layer.kind == "eltwise"
                and layers[previous].kind == "conv" and previous not in cascaded.values()
                and layers[previous].output_bytes == layer.output_bytes
                and layer.input_bytes == 2 * layer.output_bytes):
            cascaded[i] = previous
        previous = i
    return cascaded


def with_cascade(conv: LayerCost, add: LayerCost) -> LayerCost:
    """The conv as it runs with `add` cascaded behind it: it also reads the add's other operand
    and writes the add's output in place of its own (the conv's output never reaches the banks)."""
    return dataclasses.replace(
        conv, input_bytes=conv.input_bytes + add.input_bytes - conv.output_bytes,
        output_bytes=add.output_bytes,
        graph_input_bytes=conv.graph_input_bytes + add.graph_input_bytes,
        graph_output_bytes=conv.graph_output_bytes + add.graph_output_bytes)


def timed_layers(layers: list[LayerCost], device: FpgaDevice) -> list[tuple[LayerCost, LayerCost | None]]:
    """The layers the DPU spends time on, each with the add cascaded into it (None if none):
    host layers, free and fused ops and cascaded adds are left out."""
    cascaded = cascaded_adds(layers, device)
    into = {conv: layers[add] for add, conv in cascaded.items()}
    return [(layer, into.get(i)) for i, layer in enumerate(layers)
            if not runs_on_host(layer, device) and layer.kind != "other"
            and layer.op_type not in FUSED_OP_TYPES and i not in cascaded]


def overlapped(conv_s: float, misc_s: float, overlap: float) -> float:
    """DPU time of a call whose conv-array work takes `conv_s` and whose pooling, element-wise
    and depthwise work on their own engines takes `misc_s`: the engines run side by side on
    different tiles (the DPU's scheduler issues each engine's instructions as their inputs are
    ready), so a share `overlap` of the shorter one hides under the longer."""
    return conv_s + misc_s - overlap * min(conv_s, misc_s)


def dpu_pass(layer: LayerCost, device: FpgaDevice, n: int, bandwidth_bps: float,
             params: DpuParams, cascade: LayerCost | None = None) -> tuple[float, float, str, float]:
    """(seconds, off-chip bytes, bound, utilisation) of `n` instances through a DPU layer, one
    instance per batch engine, all engines in step; `cascade`: an add cascaded into the layer."""
    if layer.kind == "other" or layer.op_type in FUSED_OP_TYPES:
        return 0.0, 0.0, "compute", 0.0
    _, util = tiled_cycles(layer, device, params.alu_pp_share)
    compute_s = layer_seconds(layer, device, params.alu_pp_share, cascade) / params.compute_efficiency
    moved = with_cascade(layer, cascade) if cascade is not None else layer
    nbytes = offchip_bytes(moved, n, device.onchip_buffer_kb * 1024, params.activation_buffer_share,
                           device.feature_buffer_kb * 1024)
    memory_s = nbytes / bandwidth_bps
    overhead_s = params.layer_overhead_cycles / (device.control_clock_mhz * 1e6)
    if overhead_s > max(compute_s, memory_s):
        bound = "overhead"
    else:
        bound = "compute" if compute_s >= memory_s else "memory"
    return max(compute_s, memory_s) + overhead_s, nbytes, bound, util


def layer_seconds(layer: LayerCost, device: FpgaDevice, alu_pp_share: float,
                  cascade: LayerCost | None = None) -> float:
    """Seconds of one instance of a DPU layer at full efficiency: its tiled cycles at its clock.
    With an add cascaded into it, the slower of the two stages of the pipeline: the conv, or the
    element-wise engine at its cascade rate (channel_parallel x conv_eltwise_cascade per PL cycle)."""
    seconds = tiled_cycles(layer, device, alu_pp_share)[0] / layer_clock_hz(layer, device)
    if cascade is not None and device.conv_eltwise_cascade:
        lanes = device.misc_engines.get("eltwise", (device.icp, 0))[0] * device.conv_eltwise_cascade
        seconds = max(seconds, cascade.macs / lanes / (device.control_clock_mhz * 1e6))
    return seconds


def layer_clock_hz(layer: LayerCost, device: FpgaDevice) -> float:
    """The clock a layer's cycles run at: the MAC array's for conv / gemm, the ALU's (the PL
    clock of a Versal DPU) for depthwise, pooling and element-wise ops."""
    return (device.clock_mhz if layer.kind in CONV_KINDS else device.control_clock_mhz) * 1e6


def tiled_cycles(layer: LayerCost, device: FpgaDevice, alu_pp_share: float) -> tuple[float, float]:
    """DPU cycles of one instance of a layer, and the share of MAC lanes doing useful work.

    Conv / gemm use the PP x ICP x OCP array, each dimension rounded up to whole tiles (per
    group for grouped convs). Depthwise conv, pooling and element-wise ops run on their own
    engines: the device's `misc_engines` lanes (channels x pixels, from the DPU's prototxt),
    else ICP channels x (PP * alu_pp_share) pixels; one MAC or element operation per lane per
    cycle.
    """
    if layer.kind in CONV_KINDS:
        groups = max(1, layer.groups)
        c_in, c_out = max(1, layer.c_in // groups), max(1, layer.c_out // groups)
        c_in, kernel_w = augmented(c_in, max(1, layer.kernel_w), groups, device)
        cycles = (groups * math.ceil(c_in / device.icp) * math.ceil(c_out / device.ocp)
                  * max(1, layer.h_out) * math.ceil(max(1, layer.w_out) / device.pp)
                  * max(1, layer.kernel_h) * kernel_w)
        lanes = device.pp * device.icp * device.ocp
        return float(cycles), layer.macs / (cycles * lanes) if cycles else 0.0
    alu_cp, alu_pp = device.misc_engines.get(layer.kind) or (device.icp, max(1, int(device.pp * alu_pp_share)))
    if layer.kind == "depthwise":
        cycles = (math.ceil(layer.c_out / alu_cp) * max(1, layer.h_out)
                  * math.ceil(max(1, layer.w_out) / alu_pp) * max(1, layer.kernel_h)
                  * max(1, layer.kernel_w))
        return float(cycles), layer.macs / (cycles * alu_pp * alu_cp) if cycles else 0.0
    return layer.macs / (alu_pp * alu_cp), 0.0  # pool, eltwise: element operations


def augmented(c_in: int, kernel_w: int, groups: int, device: FpgaDevice) -> tuple[int, int]:
    """(input channels, kernel width) a conv's tiles run with after channel augmentation.

    A DPU with `channel_augmentation` (its prototxt's channel_num) folds `f` kernel columns of
    a layer with fewer input channels than ICP into `f * c_in <= channel_num` channels, so the
    3-channel first layer of most CNNs fills more of the ICP lanes (PG338 "Channel
    Augmentation"): a 7x7 kernel on 3 channels runs as 2 columns of 15 channels, not 7 of 3.
    """
    num = device.channel_augmentation
    if not num or groups != 1 or c_in >= device.icp or kernel_w == 1:
        return c_in, kernel_w
    fold = min(kernel_w, max(1, num // c_in))
    return c_in * fold, math.ceil(kernel_w / fold)


def offchip_bytes(layer: LayerCost, n: int, onchip_bytes: float, activation_share: float,
                  feature_buffer_bytes: float = 0.0) -> float:
    """Bytes a layer moves off-chip for `n` instances side by side (one per batch engine).

    Feature maps live off-chip between layers, so each instance reads its input and writes its
    output once; the engines share one copy of the weights. When neither the inputs nor the
    weights fit their share of the on-chip banks, the smaller re-read wins: the weights once
    per input tile, or the inputs once per weight tile. A DPU whose batch engines each have
    their own feature-map banks (`feature_buffer_bytes`: DPUCVDX8G, DPUCVDX8H, DPUCADF8H) keeps a layer's
    maps there when its input and output fit; the graph's own inputs and outputs still move.
    """
    if feature_buffer_bytes and layer.input_bytes + layer.output_bytes <= feature_buffer_bytes:
        inputs, outputs = n * layer.graph_input_bytes, n * layer.graph_output_bytes
        return float(inputs + outputs + layer.weight_bytes)
    inputs, outputs, weights = n * layer.input_bytes, n * layer.output_bytes, layer.weight_bytes
    act_buf = max(1.0, activation_share * onchip_bytes)
    weight_buf = max(1.0, (1 - activation_share) * onchip_bytes)
    extra = 0.0
    if inputs > act_buf and weights > weight_buf:
        extra = min((math.ceil(inputs / act_buf) - 1) * weights,
                    (math.ceil(weights / weight_buf) - 1) * inputs)
    return float(inputs + outputs + weights + extra)
