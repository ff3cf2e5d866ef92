"""Shipped data, every row with its source: prices (prices.yaml), FPGA boards (fpga_devices.yaml)
AMD's published DPU figures (fpga_published.csv; fpga_calibration.csv is the older two-board copy of
shared/reference), the DPU model parameters fitted on them (dpu_params.yaml) and the error band of each
board's estimates (fpga_error_bands.yaml), GPU cards (gpu_devices.yaml).
"""

from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent
