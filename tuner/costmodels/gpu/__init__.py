"""GPU cards as the what-if model sees them; no Ray, no pydantic (a bare GPU machine imports it).

- `devices`: tuner/catalog/gpu_devices.yaml (sourced peaks per card) and its calibration.
- `whatif`: `estimate_gpu` (always estimated=True) and `fit_calibration`.

The measuring side of GPUs (the bench, its backends, NVML facts) is `tuner.evaluators.gpu`.
Nothing is imported here, so `import tuner.costmodels.gpu.devices` stays light.
"""
