"""A search space as Optuna sees it: `suggest` (ask a trial), `enumerate_configs` (the grid)
and `params_for` (the params of a config, to enqueue it). The three agree by construction:
`enumerate_configs` walks the same ranges `suggest` clamps to the cluster.

Parameter names are per platform (``precision.cpu``) because Optuna refuses two distributions
under one name; a pow2 integer is searched as its exponent (``batch_size_log2.cpu``) so samplers
keep its order.

The same `suggest` serves the search (an `optuna.Trial`) and deployment (an
`optuna.trial.FixedTrial` of a chosen trial's params, with `cluster=None`: the space's own
bounds), so the two never disagree.
"""

from __future__ import annotations

from typing import Any

import optuna

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.spec.params import IntParam
from tuner.spec.space import CpuSpace, SearchSpace


def _name(spec: IntParam, name: str) -> str:
    """The study's param name: ``batch_size.cpu``, or ``batch_size_log2.cpu`` when pow2."""
    if not spec.pow2:
        return name
    base, _, platform = name.partition(".")
    return f"{base}_log2.{platform}"


def _value(spec: IntParam, value: int) -> int:
    return value.bit_length() - 1 if spec.pow2 else value


def _suggest_int(trial: optuna.trial.BaseTrial, name: str, spec: IntParam, high: int | None = None) -> int:
    hi = spec.high if high is None else min(spec.high, high)
    hi = max(hi, spec.low)
    if spec.pow2:
        lo_k, hi_k = spec.low.bit_length() - 1, hi.bit_length() - 1
        return int(2 ** trial.suggest_int(_name(spec, name), lo_k, hi_k))
    return trial.suggest_int(name, spec.low, hi, step=spec.step, log=spec.log)


def _cpu(space: SearchSpace) -> CpuSpace:
    sp = space.platforms.cpu
    assert sp is not None, "callers check that cpu is enabled"
    return sp


def _replica_high(space: SearchSpace, platform: str, device: str | None, cluster: ClusterInfo | None) -> int:
    sp = space.platform(platform)
    assert sp is not None
    if cluster is None:
        return sp.replicas.high
    if platform == "cpu":
        return min(sp.replicas.high, cluster.total_cpus // max(1, _cpu(space).threads_per_replica.low))
    if platform == "fpga" and device is not None:
        return min(sp.replicas.high, cluster.fpga_cores(device))
    if platform == "gpu":  # each replica's host thread takes a core
        return min(sp.replicas.high, max(1, cluster.total_cpus))
    return sp.replicas.high


def _thread_high(space: SearchSpace, replicas: int, cluster: ClusterInfo | None) -> int:
    sp = _cpu(space)
    if cluster is None:
        return sp.threads_per_replica.high
    return min(sp.threads_per_replica.high, cluster.total_cpus // replicas, cluster.max_node_cpus)


def suggest(space: SearchSpace, trial: optuna.trial.BaseTrial, cluster: ClusterInfo | None) -> TrialConfig:
    """Sample one configuration the cluster can run (impossible ones are never asked).

    Args:
        space: the validated search space.
        trial: an `optuna.Trial` (search) or a `FixedTrial` of recorded params (deployment).
        cluster: what the cluster can run; None to rebuild a recorded trial within the space's
            own bounds (no cluster is consulted).
    """
    platform = str(trial.suggest_categorical("platform", space.available_platforms(cluster)))
    sp = space.platform(platform)
    assert sp is not None
    precision = trial.suggest_categorical(f"precision.{platform}", sp.precision.choices)
    batch_size = _suggest_int(trial, f"batch_size.{platform}", sp.batch_size)
    device = None
    choices = space.devices(platform)
    if choices:
        device = str(trial.suggest_categorical(f"device.{platform}", choices))
    replicas = _suggest_int(trial, f"replicas.{platform}", sp.replicas,
                            high=_replica_high(space, platform, device, cluster))
    threads = 1
    if platform == "cpu":
        threads = _suggest_int(trial, "threads_per_replica.cpu", _cpu(space).threads_per_replica,
                               high=_thread_high(space, replicas, cluster))
    return TrialConfig(platform, batch_size, str(precision), replicas, threads, device)


def _clamped(spec: IntParam, high: int) -> list[int]:
    hi = max(min(spec.high, high), spec.low)
    return [v for v in spec.values() if v <= hi]


def enumerate_configs(space: SearchSpace, cluster: ClusterInfo) -> list[TrialConfig]:
    """Every configuration `suggest` can return on this cluster (the grid)."""
    out = []
    for platform in space.available_platforms(cluster):
        sp = space.platform(platform)
        assert sp is not None
        devices: list[str | None] = list(space.devices(platform)) or [None]
        for device in devices:
            for precision in sp.precision.choices:
                for batch in sp.batch_size.values():
                    for replicas in _clamped(sp.replicas, _replica_high(space, platform, device, cluster)):
                        threads = (_clamped(_cpu(space).threads_per_replica, _thread_high(space, replicas, cluster))
                                   if platform == "cpu" else [1])
                        for t in threads:
                            out.append(TrialConfig(platform, batch, str(precision), replicas, t, device))
    return out


def params_for(space: SearchSpace, config: TrialConfig) -> dict[str, Any]:
    """The study params that make `suggest` return `config` (for enqueueing it)."""
    p = config.platform
    sp = space.platform(p)
    assert sp is not None, f"platform {p!r} is not enabled in the space"
    params: dict[str, Any] = {"platform": p, f"precision.{p}": config.precision}
    params[_name(sp.batch_size, f"batch_size.{p}")] = _value(sp.batch_size, config.batch_size)
    if space.devices(p):
        params[f"device.{p}"] = config.device
    params[_name(sp.replicas, f"replicas.{p}")] = _value(sp.replicas, config.replicas)
    if p == "cpu":
        threads = _cpu(space).threads_per_replica
        params[_name(threads, "threads_per_replica.cpu")] = _value(threads, config.threads_per_replica)
    return params
