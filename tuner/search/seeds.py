"""Seed configurations enqueued at the start of a new study (warm start).

One per (platform, precision) the cluster can run, at a middle batch size with one replica
(on an FPGA, every DPU core: the whole board is paid for), so the first trials cover every
precision and platform before the sampler takes over.
"""

from __future__ import annotations

from typing import Any

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.search.suggest import params_for
from tuner.spec.params import IntParam
from tuner.spec.space import SearchSpace

SEED_BATCH_SIZE = 16


def _pick(spec: IntParam, want: int) -> int:
    return min(spec.values(), key=lambda v: (abs(v - want), v))


def seed_configs(space: SearchSpace, cluster: ClusterInfo) -> list[TrialConfig]:
    seeds = []
    for platform in space.available_platforms(cluster):
        sp = getattr(space.platforms, platform)
        device = str(sp.device.choices[0]) if getattr(sp, "device", None) is not None else None
        for precision in sp.precision.choices:
            batch = _pick(sp.batch_size, SEED_BATCH_SIZE)
            if platform == "fpga":
                replicas = min(sp.replicas.high, cluster.fpga_cores(device or ""))
            else:
                replicas = sp.replicas.low
            threads = sp.threads_per_replica.low if platform == "cpu" else 1
            seeds.append(TrialConfig(platform, batch, str(precision), replicas, threads, device))
    return seeds


def seed_params(space: SearchSpace, cluster: ClusterInfo) -> list[dict[str, Any]]:
    """Optuna params (as `study.enqueue_trial` takes them) of the seed configurations."""
    return [params_for(space, c) for c in seed_configs(space, cluster)]
