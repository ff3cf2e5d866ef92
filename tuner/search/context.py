"""What tuner knows about a search before the first trial, handed to the samplers that use it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.spec.space import SearchSpace


@dataclass(frozen=True)
class SamplerContext:
    """What tuner knows before the first trial, for samplers that use it.

    Attributes:
        space: the search space. cluster: what the cluster can run.
        accuracy: measured accuracy per precision (known before any trial).
        fp32_accuracy: the reference for the accuracy floor.
        estimates: objective values of configurations a cost model predicts (FPGA), keyed by
            TrialConfig; they cost nothing to know.
        usd_per_hour: price of a configuration's resources (cost = price / throughput).
        accuracy_floor_ratio: the accuracy constraint (share of fp32).
        slo_ms: the p95 SLO, when the study has one.
    """

    space: SearchSpace
    cluster: ClusterInfo
    accuracy: dict[str, float] = field(default_factory=dict)
    fp32_accuracy: float = 1.0
    estimates: dict[TrialConfig, dict[str, float]] = field(default_factory=dict)
    usd_per_hour: Callable[[TrialConfig], float] | None = None
    accuracy_floor_ratio: float = 0.99
    slo_ms: float | None = None
