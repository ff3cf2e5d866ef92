"""Evaluators: one per platform, behind one contract (`base`), found by platform in `registry`.
None of them imports Ray: the runners place and drive them.

- `base`: the contract (`Bench`, `ReplicaEvaluator`, `EstimateEvaluator`) and shared helpers.
- `windows`: the timing protocol of measured platforms (warm-up, sized windows until stable,
  confidence intervals), for every bench alike.
- `cpu`: ONNX Runtime sessions, one per replica, real load, real clocks (`cpu.ReplicaBench`).
- `served`: the served level: the load client of a configuration deployed on Ray Serve (the
  runner deploys it), timed by the same protocol.
- `fpga`: the analytical DPU cost model (`tuner.costmodels.fpga`); its figures are estimates.
- `gpu/`: the CUDA bench (ONNX Runtime CUDA / TensorRT, or torch), backend choice, NVML facts.

May import: the vocabulary at the top of `tuner`, `tuner.spec.measurement`, `tuner.models`,
`tuner.costmodels`, and `serving.client` (the V2 client; no Ray). Never Ray, Optuna, or the study.
"""
