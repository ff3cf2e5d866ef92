"""`tuner measure`: measure (or, on FPGA, estimate) one configuration without a study.

The same code path as a trial: the same cluster, runner, protocol, accuracy and prices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from tuner.cluster_info import ClusterInfo
from tuner.config import ALLOWED_PRECISIONS, TrialConfig
from tuner.costmodels.fpga.devices import load_devices
from tuner.errors import TunerError
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import check_model_arg, prepare_model
from tuner.prices import load_prices
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.load import load_space
from tuner.study.outcome import make_outcome
from tuner.study.tune import resolve_load


@dataclass(frozen=True)
class MeasureOptions:
    config: TrialConfig
    model: str = "digits-cnn"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    space: str = "default"
    ray_address: str | None = None
    load_mode: str | None = None
    target_rps: float | None = None
    measure: str | None = None  # "served" or "engine"; None: the search space's
    num_gpus: int | None = None  # GPUs the local cluster declares; None: what Ray detects
    gpu_backend: str = "ort"  # "ort", or "test-cpu" (tests only)


def check_config(config: TrialConfig, cluster: ClusterInfo) -> None:
    """Refuse what cannot run here, naming the flag to change."""
    if config.precision not in ALLOWED_PRECISIONS.get(config.platform, ()):
        raise TunerError(
            f"Got --precision {config.precision} for --platform {config.platform}. "
            f"{config.platform} runs {list(ALLOWED_PRECISIONS.get(config.platform, ()))}. Pick one of them.")
    why = cluster.why_not(config.platform)
    if why:
        raise TunerError(f"Got --platform {config.platform}, but it cannot run here: {why}.")
    if config.batch_size < 1 or config.replicas < 1 or config.threads_per_replica < 1:
        raise TunerError("--batch-size, --replicas and --threads-per-replica must be >= 1.")
    if config.platform == "cpu" and config.cpus_needed > cluster.total_cpus:
        raise TunerError(
            f"Got --replicas {config.replicas} x --threads-per-replica {config.threads_per_replica} = "
            f"{config.cpus_needed} cores, but the cluster has {cluster.total_cpus} usable cores. Use fewer.")
    if config.platform == "fpga":
        if config.device not in cluster.fpga_devices:
            raise TunerError(f"Got --device {config.device!r}. Known FPGA devices: {sorted(cluster.fpga_devices)}.")
        if config.replicas > cluster.fpga_cores(config.device):
            raise TunerError(f"Got --replicas {config.replicas}, but {config.device} has "
                             f"{cluster.fpga_cores(config.device)} DPU cores. Use at most that (or --replicas max).")


def measure(opts: MeasureOptions, log=print) -> dict[str, Any]:
    """Measure one configuration; returns the JSON-ready record."""
    t0 = time.perf_counter()
    space = load_space(opts.space)
    load = resolve_load(space, opts.load_mode, opts.target_rps)
    prices = load_prices(space.prices)
    devices = load_devices()
    check_model_arg(opts.model, opts.model_options)
    cluster = RayCluster(opts.ray_address, num_gpus=opts.num_gpus)
    runner = None
    try:
        gpu, gpu_note = cluster.probe_gpu(opts.gpu_backend) if opts.config.platform == "gpu" else (None, "")
        info = cluster.info({name: d.cores for name, d in devices.items()}, gpu, gpu_note)
        prices = replace(prices, gpus=info.total_gpus, gpu_device=gpu.device if gpu else None)
        config = opts.config
        if config.platform == "fpga" and config.replicas == 0:  # --replicas max
            config = TrialConfig(**{**config.to_dict(), "replicas": info.fpga_cores(config.device or "")})
        check_config(config, info)
        prices.row(prices.key_for(config))
        model = prepare_model(opts.model, opts.model_options, {config.precision}, log)
        if config.precision not in model.variants and config.platform != "gpu":
            raise TunerError(f"Got --precision {config.precision}, but {model.name} has no {config.precision} variant: "
                             f"{model.left_out.get(config.precision, 'it cannot be built here')}. Pick another precision.")
        level = opts.measure or space.measure
        runner = RayRunner(model, space.measurement, load, devices, cluster, level=level, served=space.serving, gpu=gpu)
        try:
            perf = runner.run(config)
        except TrialFailed as exc:
            raise TunerError(f"The configuration could not be measured: {exc.reason}", exit_code=1) from None
        outcome = make_outcome(config, perf, model, prices, space.constraints.to_constraints())
    finally:
        if runner is not None:
            runner.shutdown()
        cluster.shutdown()
    d = outcome.details
    measurement: dict[str, Any] = {k: d.get(k) for k in ("mode", "target_rps", "windows", "windows_used", "window_s", "stable",
                                         "requests", "target_requests", "warmup_s", "throughput_cv", "measuring_s",
                                         "trial_wall_s", "latency_p95_ci_ms", "latency_p99_ci_ms", "window_throughput_rps",
                                         "interference") if k in d}
    measurement["wall_s"] = round(time.perf_counter() - t0, 3)
    measurement["level"] = outcome.level
    for key in ("deploy_s", "concurrency", "instances_per_request", "binary", "stack_cores_used", "requests_failed",
                "client_placement"):
        if key in d:
            measurement[key] = d[key]
    if outcome.level == "served":
        measurement["stack"] = d.get("stack")
        measurement["hardware"] = {"cores_used": (d.get("stack") or {}).get("client", {}).get("cpu_ids"),
                                   "placement": "the whole node (served trials take it)"}
    elif config.platform in ("cpu", "gpu"):
        reps = d.get("replicas", [])
        measurement["hardware"] = {
            "cpu_model": reps[0].get("cpu_model") if reps else None,
            "cores_used": sorted(c for r in reps for c in (r.get("cpu_ids") or [])),
            "nodes": sorted({r["node"] for r in reps}),
            "placement": d.get("placement"),
        }
    else:
        keys = ("device", "dpu", "clock_mhz", "gops_per_instance", "host_layers")
        measurement["estimate"] = {k: d.get(k) for k in keys if k in d}
    return {
        "config": config.as_contract(),
        "device": config.device,
        "metrics": outcome.metrics.to_dict(),
        "level": outcome.level,
        "engine": outcome.engine.to_dict() if outcome.engine else None,
        "serving_efficiency": outcome.serving_efficiency,
        "feasible": outcome.feasible,
        "constraints": outcome.constraints,
        "artifact": outcome.artifact,
        "price": outcome.price,
        "measurement": measurement,
        "gpu": d.get("gpu"),
    }
