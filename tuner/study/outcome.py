"""From what a worker returned to what the study records: metrics, constraints, attributes.

Shared by `tuner tune` (every trial), `tuner measure` (one configuration) and the finalists'
re-measurement, so the three can never compute a metric differently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from tuner.config import TrialConfig
from tuner.metrics import Constraints, Metrics, PerfResult, is_feasible, worst_values
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable
from tuner.spec.measurement import LoadSpec


@dataclass(frozen=True)
class Outcome:
    config: TrialConfig
    metrics: Metrics
    constraints: dict[str, float]
    artifact: str
    price: dict[str, Any]
    details: dict[str, Any]

    @property
    def feasible(self) -> bool:
        return is_feasible(self.constraints)


def make_outcome(config: TrialConfig, perf: PerfResult, model: PreparedModel, prices: PriceTable,
                 constraints: Constraints) -> Outcome:
    variant = model.variants[config.precision]
    metrics = Metrics(
        throughput_rps=perf.throughput_rps,
        latency_p50_ms=perf.latency_p50_ms,
        latency_p95_ms=perf.latency_p95_ms,
        latency_p99_ms=perf.latency_p99_ms,
        accuracy=variant.accuracy,
        cost_usd_per_million=prices.cost_usd_per_million(config, perf.throughput_rps),
        estimated=perf.estimated,
    )
    key = prices.key_for(config)
    price = {"key": key, "usd_per_hour": prices.usd_per_hour(config), "source": prices.row(key).source}
    return Outcome(config, metrics, constraints.values(metrics, model.fp32_accuracy), variant.path, price, perf.details)


def measure_key(config: TrialConfig, model: PreparedModel, load: LoadSpec, hardware: str) -> str:
    """What makes two measurements the same: config, variant file, load, hardware."""
    variant = model.variants[config.precision].sha256
    where = f"fpga-model:{config.device}" if config.platform == "fpga" else hardware
    return json.dumps([config.to_dict(), variant, load.to_dict(), where], sort_keys=True)


def record(trial: optuna.Trial, outcome: Outcome, key: str, objectives: Sequence[str]) -> list[float]:
    """Write the outcome on the trial (constraints for the sampler, attributes for people and
    the dashboard) and return the objective values to tell."""
    for name, value in outcome.constraints.items():
        trial.set_constraint(name, value)
        trial.set_user_attr(f"constraint.{name}", value)
    for name, value in outcome.metrics.to_dict().items():
        trial.set_user_attr(name, value)
    trial.set_user_attr("feasible", outcome.feasible)
    trial.set_user_attr("artifact", outcome.artifact)
    trial.set_user_attr("price", outcome.price)
    trial.set_user_attr("measurement", outcome.details)
    trial.set_user_attr("measure_key", key)
    return outcome.metrics.objective_values(objectives)


def record_not_runnable(trial: optuna.Trial, reason: str, key: str, objectives: Sequence[str]) -> list[float]:
    """A configuration that cannot run here (out of memory, a layout the cluster cannot hold):
    a constraint violation the sampler learns from, keyed so it is never tried again."""
    trial.set_user_attr("measure_key", key)
    trial.set_constraint("runnable", 1.0)
    trial.set_user_attr("constraint.runnable", 1.0)
    trial.set_user_attr("feasible", False)
    trial.set_user_attr("failure", reason)
    return worst_values(objectives)


def copy_measurement(trial: optuna.Trial, source: optuna.trial.FrozenTrial) -> list[float]:
    """Reuse an identical configuration's measurement (no double work), marked as reused."""
    for name, value in source.constraints.items():
        trial.set_constraint(name, value)
    for name, value in source.user_attrs.items():
        if name not in ("config", "reused_from"):
            trial.set_user_attr(name, value)
    trial.set_user_attr("reused_from", source.number)
    return list(source.values)
