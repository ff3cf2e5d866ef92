"""The samplers `--sampler` offers. Every one proposes only configurations the cluster can
run, because they all go through `SearchSpace.suggest`.

- ``default``: tuner's own strategy (see tuner/structured.py), chosen by offline replay
  (experiments/replay.py; figures in the README).
- ``tpe``: multivariate TPE with a constant liar (for trials in flight).
- ``gp``: Optuna's GP sampler. ``nsga2``: NSGA-II. ``random``: uniform random.
- ``grid``: every configuration once (Optuna's brute-force sampler walks the conditional grid).
All read the constraints set with `trial.set_constraint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from tuner.errors import TunerError

SAMPLERS = ("default", "tpe", "gp", "nsga2", "random", "grid")


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

    space: Any
    cluster: Any
    accuracy: dict[str, float] = field(default_factory=dict)
    fp32_accuracy: float = 1.0
    estimates: dict[Any, dict[str, float]] = field(default_factory=dict)
    usd_per_hour: Callable[[Any], float] | None = None
    accuracy_floor_ratio: float = 0.99
    slo_ms: float | None = None


def make_sampler(name: str, seed: int | None, context: SamplerContext | None = None) -> optuna.samplers.BaseSampler:
    if name == "default":
        from tuner.structured import StructuredSampler

        if context is None:
            raise ValueError("the default sampler needs a SamplerContext")
        return StructuredSampler(context, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.BruteForceSampler(seed=seed)
    raise TunerError(f"Got {name!r} for --sampler. Choose one of: {', '.join(SAMPLERS)}.")
