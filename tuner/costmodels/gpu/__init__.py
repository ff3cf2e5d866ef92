"""GPU support that needs no Ray: the device catalog, the torch definitions of built-in models,
the two measuring backends, NVML facts, and what-if roofline estimates for absent cards.

- `devices`: tuner/catalog/gpu_devices.yaml (sourced peaks per card) and its calibration.
- `torch_models`: TorchSource and the builders of built-in models for the torch backend.
- `runners`: OrtCudaRunner and TorchRunner, used by tuner.evaluators.gpu.bench.GpuReplicaBench.
- `nvml`: best-effort GPU facts (name, driver, memory) from NVML or nvidia-smi.
- `whatif`: estimate_gpu (always estimated=True) and fit_calibration.

Nothing is imported here, so `import tuner.costmodels.gpu.devices` stays light.
"""
