"""Analytical pricing of FPGA trials (AMD/Xilinx Vitis AI DPUs); no board needs to be attached.

Every figure this package produces is an estimate: `graph` turns an ONNX model into per-layer
costs, `devices` loads the sourced DPU catalog, `dpu_model` prices a model on a device with the free
parameters of `params` (one layer's DPU time in `dpu_layers`, the host CPU and PCIe side in `host`).
`calibration` reads AMD's published figures of every board and predicts
them, `fitting` fits the parameters on them (shared and per board) and cross-validates, and
`bands` gives each board's expected error from that validation.
"""

from tuner.costmodels.fpga.devices import FpgaDevice, load_devices
from tuner.costmodels.fpga.dpu_model import FpgaEstimate, LayerEstimate, estimate
from tuner.costmodels.fpga.params import DpuParams, load_params
from tuner.costmodels.graph.analyze import analyze_graph
from tuner.costmodels.graph.layer_cost import LayerCost

__all__ = [
    "DpuParams",
    "FpgaDevice",
    "FpgaEstimate",
    "LayerCost",
    "LayerEstimate",
    "analyze_graph",
    "estimate",
    "load_devices",
    "load_params",
]
