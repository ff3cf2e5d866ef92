"""Shipped data, every row with its source: prices (prices.yaml), FPGA boards (fpga_devices.yaml)
and their DPU model parameters (dpu_params.yaml, fpga_calibration.csv), GPU cards (gpu_devices.yaml).
"""

from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent
