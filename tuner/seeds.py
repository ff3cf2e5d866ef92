"""Seed configurations enqueued at the start of a new study (warm start).

One per (platform, precision) the cluster can run, at a middle batch size with one replica
(on an FPGA, every DPU core: the whole board is paid for), so the first trials cover every
precision and platform before the sampler takes over.
"""

from __future__ import annotations

from typing import Any

from tuner.cluster_info import ClusterInfo
from tuner.search_space import IntParam, SearchSpace

SEED_BATCH_SIZE = 16


def _pick(spec: IntParam, want: int) -> int:
    vals = spec.values()
    return min(vals, key=lambda v: (abs(v - want), v))


def _param(spec: IntParam, name: str, value: int) -> tuple[str, int]:
    if spec.pow2:
        return name.replace("batch_size", "batch_size_log2"), value.bit_length() - 1
    return name, value


def seed_params(space: SearchSpace, cluster: ClusterInfo) -> list[dict[str, Any]]:
    """Optuna params (as `study.enqueue_trial` takes them) of the seed configurations."""
    seeds = []
    for platform in space.available_platforms(cluster):
        sp = getattr(space.platforms, platform)
        for precision in sp.precision.choices:
            params: dict[str, Any] = {"platform": platform, f"precision.{platform}": precision}
            k, v = _param(sp.batch_size, f"batch_size.{platform}", _pick(sp.batch_size, SEED_BATCH_SIZE))
            params[k] = v
            device = getattr(sp, "device", None)
            if device is not None:
                params[f"device.{platform}"] = device.choices[0]
            if platform == "fpga":
                replicas = min(sp.replicas.high, cluster.fpga_cores(str(device.choices[0])))
            else:
                replicas = sp.replicas.low
            params[f"replicas.{platform}"] = replicas
            if platform == "cpu":
                params["threads_per_replica.cpu"] = sp.threads_per_replica.low
            seeds.append(params)
    return seeds
