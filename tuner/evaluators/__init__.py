"""Evaluators: one per platform, behind one contract (`base`), found by platform in `registry`.
None of them imports Ray: the runners place and drive them.

- `base`: the contract (`Bench`, `ReplicaEvaluator`, `EstimateEvaluator`) and shared helpers.
- `windows`: the timing protocol of measured platforms (warm-up, sized windows until stable,
  confidence intervals), for every bench alike.
- `cpu`: ONNX Runtime sessions, one per replica, real load, real clocks (`cpu.ReplicaBench`).
- `fpga`: the analytical DPU cost model (`tuner.costmodels.fpga`); its figures are estimates.
- `gpu/`: the CUDA bench (ONNX Runtime CUDA / TensorRT, or torch), backend choice, NVML facts.

May import: the vocabulary at the top of `tuner`, `tuner.spec.measurement`, `tuner.models`,
`tuner.costmodels`. Never Ray, Optuna, or the study.
"""
