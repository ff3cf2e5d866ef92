"""The GPU bench: one replica on a CUDA device, measured like a CPU replica (same contract, same
timing protocol), with device-synchronised clocks. No Ray; torch and onnxruntime-gpu are imported
only when a bench is built, so this package imports fine on a machine without CUDA.

- `bench`: `GpuReplicaBench` (the replica contract of `tuner.evaluators.base.Bench`).
- `select`: which backend runs a (model, precision), a replica's Ray resources, detection.
- `runners`: the two backends, `OrtCudaRunner` and `TorchRunner`.
- `torch_models`: the torch definitions of the built-in models, for the torch backend.
- `nvml`: best-effort GPU facts (name, driver, memory) from NVML or nvidia-smi.

Not in the registry yet: `tuner tune` does not dispatch gpu trials (issue 14).
"""
