"""Evaluators: one per platform, behind one contract (`base`), found by platform in `registry`.
None of them imports Ray: the runners place and drive them.

- `base`: the contract (`Bench`, `ReplicaEvaluator`, `EstimateEvaluator`) and shared helpers.
- `windows`: the timing protocol of measured platforms (warm-up, sized windows until stable,
  confidence intervals), for every bench alike.
- `cpu`: ONNX Runtime sessions, one per replica, real load, real clocks (`cpu.ReplicaBench`).
- `served`: the served level: the load client of a configuration deployed on Ray Serve (the
  runner deploys it), timed by the same protocol.
- `fpga`: the analytical DPU cost model (`tuner.costmodels.fpga`); its figures are estimates.
- `gpu`: the gpu platform in `tuner tune`: the probed `GpuSetup` of the cluster's GPU nodes and
  its evaluator (replicas as Ray actors holding `num_gpus`, whole or shared).
- `gpu_bench`: `GpuReplicaBench`, one replica on a CUDA device, measured like a CPU replica
  (same contract, same protocol) with device-synchronised clocks; torch and onnxruntime-gpu
  are imported only when a bench is built, so all of this imports on a machine without CUDA.
- `gpu_select`: which backend runs a (model, precision), detection of a node's GPU runtime.
- `gpu_runners`: the backends (`OrtCudaRunner`, `TorchRunner`, and `OrtTestRunner`, the TEST
  backend: ONNX Runtime on the CPU behind a declared GPU, for tests only).
- `gpu_torch_models`: torch definitions of the built-in models (the torch backend).
- `gpu_nvml`: best-effort GPU facts (name, driver, memory) from NVML or nvidia-smi.

May import: the vocabulary at the top of `tuner`, `tuner.spec.measurement`, `tuner.models`,
`tuner.costmodels`, and `serving.client` (the V2 client; no Ray). Never Ray, Optuna, or the study.
"""
