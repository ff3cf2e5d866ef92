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
from tuner.metrics import Constraints, ErrorBand, Metrics, PerfResult, is_feasible, worst_values
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable
from tuner.record import Interference
from tuner.spec.measurement import LoadSpec
from tuner.study.dashboard_view import measured_note, save_trial_note, set_constraints


@dataclass(frozen=True)
class Outcome:
    """A trial's result as the study records it.

    Attributes:
        level: "served" (through the Ray Serve app, over HTTP), "engine" (ONNX Runtime in a bench
            process) or "estimate" (a cost model).
        engine: for a served trial, the engine-level figures of the same configuration (the
            ceiling), priced alike; None otherwise.
    """

    config: TrialConfig
    metrics: Metrics
    constraints: dict[str, float]
    artifact: str
    price: dict[str, Any]
    details: dict[str, Any]
    level: str = "engine"
    engine: Metrics | None = None

    @property
    def serving_efficiency(self) -> float | None:
        """Served throughput over the engine's (what the serving stack keeps), when both exist."""
        if self.engine is None or self.level != "served" or self.engine.throughput_rps <= 0:
            return None
        return self.metrics.throughput_rps / self.engine.throughput_rps

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
        error_band=ErrorBand.from_dict(perf.details.get("error_band")) if perf.estimated else None,
    )
    key = prices.key_for(config)
    price = {"key": key, "usd_per_hour": prices.usd_per_hour(config), "source": prices.row(key).source}
    level = str(perf.details.get("level") or ("estimate" if perf.estimated else "engine"))
    engine = None
    if isinstance(perf.details.get("engine"), dict):
        e = perf.details["engine"]
        engine = Metrics(e["throughput_rps"], e["latency_p50_ms"], e["latency_p95_ms"], e["latency_p99_ms"],
                         variant.accuracy, prices.cost_usd_per_million(config, e["throughput_rps"]), False)
    return Outcome(config, metrics, constraints.values(metrics, model.fp32_accuracy), variant.path, price,
                   perf.details, level, engine)


def measure_key(config: TrialConfig, model: PreparedModel, load: LoadSpec, hardware: str,
                level: str = "engine") -> str:
    """What makes two measurements the same: config, variant file, load, hardware, and the
    level measured at (served and engine figures of one configuration differ)."""
    variant = model.variants[config.precision].sha256
    where = f"fpga-model:{config.device}" if config.platform == "fpga" else hardware
    parts: list[Any] = [config.to_dict(), variant, load.to_dict(), where]
    if level != "engine" and config.platform != "fpga":  # engine keys stay as earlier studies wrote them
        parts.append(level)
    return json.dumps(parts, sort_keys=True)


def record(trial: optuna.Trial, outcome: Outcome, key: str, objectives: Sequence[str]) -> list[float]:
    """Write the outcome on the trial (constraints for the sampler, attributes for people and
    the dashboard) and return the objective values to tell."""
    set_constraints(trial, outcome.constraints)
    for name, value in outcome.metrics.to_dict().items():
        trial.set_user_attr(name, value)
    trial.set_user_attr("feasible", outcome.feasible)
    trial.set_user_attr("artifact", outcome.artifact)
    trial.set_user_attr("price", outcome.price)
    trial.set_user_attr("measurement", outcome.details)
    trial.set_user_attr("measure_key", key)
    trial.set_user_attr("level", outcome.level)
    if outcome.engine is not None:
        trial.set_user_attr("engine", outcome.engine.to_dict())
        trial.set_user_attr("serving_efficiency", outcome.serving_efficiency)
    gpu = outcome.details.get("gpu")
    if isinstance(gpu, dict):  # shown in the dashboard: which backend, and whether it was the TEST one
        trial.set_user_attr("gpu_backend", gpu["backend"] + (" (TEST backend: CPU figures)" if gpu["test_backend"] else ""))
    interference = Interference.from_dict(outcome.details.get("interference"))
    if interference is not None:  # a user attribute of its own, so the dashboard shows it in the trial's list
        trial.set_user_attr("interference", interference.describe())
    m = outcome.metrics
    band = f"; expected error {m.error_band.label()}" if m.estimated and m.error_band else ""
    where = (f"FPGA {outcome.config.device} (analytical DPU model{band})" if m.estimated
             else f"{outcome.details.get('mode', 'offline')} load on this cluster (user attribute `measurement`)")
    save_trial_note(trial, measured_note(
        outcome.config.label(), outcome.level, m.estimated, m.throughput_rps, m.latency_p95_ms,
        outcome.engine.throughput_rps if outcome.engine else None,
        [name for name, value in outcome.constraints.items() if value > 0], where,
        interference is not None and interference.disturbed),
        [f"accuracy {m.accuracy:.4f}, ${m.cost_usd_per_million:.5f} per million inferences "
         f"({outcome.price.get('key')}: ${outcome.price.get('usd_per_hour', 0):.4f}/h)",
         *([f"This machine while it was measured: {interference.describe()}"] if interference else []),
         _companion_line(trial.study.study_name, m.estimated, outcome.feasible)])
    return outcome.metrics.objective_values(objectives)


def _companion_line(study: str, estimated: bool, feasible: bool) -> str:
    if estimated:
        return f"The plotted values are this estimate; the FPGA estimates are also in the study {study}.estimated."
    if not feasible:
        return f"The plotted values are this measurement; the study {study}.measured leaves infeasible trials out."
    return (f"The plotted values are this first measurement. tuner's figures (a finalist's median, what tuner show "
            f"and promote use) are plotted in the study {study}.measured.")


def record_not_runnable(trial: optuna.Trial, reason: str, key: str, objectives: Sequence[str]) -> list[float]:
    """A configuration that cannot run here (out of memory, a layout the cluster cannot hold):
    a constraint violation the sampler learns from, keyed so it is never tried again."""
    trial.set_user_attr("measure_key", key)
    set_constraints(trial, {"runnable": 1.0})
    trial.set_user_attr("feasible", False)
    trial.set_user_attr("failure", reason)
    config = trial.user_attrs.get("config")
    label = TrialConfig(**config).label() if isinstance(config, dict) else "this configuration"
    save_trial_note(trial, f"**NOT RUNNABLE** {label} | INFEASIBLE: {reason} | nothing was measured")
    return worst_values(objectives)


def copy_measurement(trial: optuna.Trial, source: optuna.trial.FrozenTrial) -> list[float]:
    """Reuse an identical configuration's measurement (no double work), marked as reused."""
    set_constraints(trial, dict(source.constraints))
    for name, value in source.user_attrs.items():
        if name not in ("config", "reused_from"):
            trial.set_user_attr(name, value)
    trial.set_user_attr("reused_from", source.number)
    save_trial_note(trial, f"**REUSED** the measurement of trial #{source.number} (the same configuration, "
                           "variant, load and hardware): nothing was measured again")
    return list(source.values)
