"""Analytical pricing of FPGA trials (AMD/Xilinx Vitis AI DPUs); no board needs to be attached.

Every figure this package produces is an estimate: `graph` turns an ONNX model into per-layer
costs, `devices` loads the sourced DPU catalog, `dpu_model` prices layers on a device.
"""

from tuner.fpga.devices import FpgaDevice, load_devices
from tuner.fpga.dpu_model import FpgaEstimate, LayerEstimate, estimate
from tuner.fpga.graph import LayerCost, analyze_graph

__all__ = [
    "FpgaDevice",
    "FpgaEstimate",
    "LayerCost",
    "LayerEstimate",
    "analyze_graph",
    "estimate",
    "load_devices",
]
