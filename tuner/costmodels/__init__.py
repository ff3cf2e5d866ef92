"""Cost models: what a configuration would do on hardware that is not measured here. Every figure
they produce is an ESTIMATE and is labelled so (`PerfResult.estimated`, "(est.)", ESTIMATED).

- `graph/`: ONNX graph analysis (per-layer MACs, weights, activations), shared by both models.
- `fpga/`: AMD/Xilinx DPU boards (sourced catalog), the DPU roofline model and its calibration.
- `gpu/`: GPU cards (sourced catalog) and the what-if roofline for cards the cluster lacks.

May import: the vocabulary at the top of `tuner` and `tuner.models` (calibration rebuilds the
built-in models). Never Ray, Optuna, the evaluators or the study. This file imports nothing.
"""
