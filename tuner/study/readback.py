"""Read a study back into typed records (`tuner.record`): one `TrialRecord` per trial.

The driver writes these user attributes on every trial (also what the dashboard shows):
``config`` (dict), ``artifact`` (path), the metric keys flat (``throughput_rps``, ...,
``estimated``), ``feasible``, ``constraint.<name>``, ``measurement`` (dict), ``price``
(dict with its source), ``failure`` for a trial that could not run, and ``reused_from``
for a configuration whose earlier measurement was reused.

Reported metrics are the first measurement, except for finalists (study attribute
``finalists``): there, the median of their re-measurements
(the first measurement, which selected them, left out: `tuner.study.finalists`). `pareto` is the front of the
reported metrics among feasible, COMPLETE, non-reused trials of one measurement level (served
when the study has served figures: `tuner.front.levels`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config import TrialConfig
from tuner.front.levels import comparable
from tuner.front.pareto import pareto_indices
from tuner.metrics import METRIC_KEYS, OBJECTIVES, ErrorBand, Metrics, directions_for
from tuner.models.spec import PreparedModel
from tuner.record import GpuRecord, Interference, Remeasured, StudyRecord, TrialRecord


def _metrics(values: dict[str, Any]) -> Metrics:
    plain = {k: values[k] for k in METRIC_KEYS if k != "error_band"}
    return Metrics(**plain, error_band=ErrorBand.from_dict(values.get("error_band")))


def trial_record(trial: FrozenTrial, finalists: dict[str, Any]) -> TrialRecord:
    """One trial as tuner reports it (a finalist with the medians of its measurements)."""
    attrs = trial.user_attrs
    measured = trial.state == TrialState.COMPLETE and "throughput_rps" in attrs
    metrics = _metrics(attrs) if measured else None
    config = TrialConfig.from_dict(attrs["config"]) if attrs.get("config") else None
    constraints = {k[len("constraint."):]: v for k, v in attrs.items() if k.startswith("constraint.")}
    feasible = bool(attrs.get("feasible", False)) if trial.state == TrialState.COMPLETE else False
    remeasured = None
    final = finalists.get(str(trial.number))
    if final and measured:
        remeasured = Remeasured(int(final["samples"]), {k: (v[0], v[1]) for k, v in final["spread"].items()},
                                float(final["throughput_cv"]), metrics, int(final.get("disturbed_samples", 0)))
        metrics, feasible = _metrics(final["metrics"]), bool(final["feasible"])
        constraints = dict(final["constraints"])
    engine = _metrics(attrs["engine"]) if isinstance(attrs.get("engine"), dict) else None
    level = attrs.get("level") or (("estimate" if attrs.get("estimated") else "engine") if measured else None)
    if final and measured and final.get("level"):
        if level == "engine" and final["level"] == "served" and engine is None:
            engine = _metrics(attrs)  # searched at the engine level: its first measurement is the ceiling
        level = final["level"]
    measurement: dict[str, Any] = attrs["measurement"] if isinstance(attrs.get("measurement"), dict) else {}
    gpu = GpuRecord.from_dict(measurement["gpu"]) if isinstance(measurement.get("gpu"), dict) else None
    return TrialRecord(trial.number, trial.state.name, config, metrics, feasible, False, constraints,
                       attrs.get("artifact"), attrs.get("failure"), attrs.get("reused_from"), remeasured,
                       level, engine, gpu, Interference.from_dict(measurement.get("interference")))


def mark_pareto(records: list[TrialRecord], objectives: list[str]) -> list[TrialRecord]:
    """The records with `pareto` set on the feasible, measured, non-reused ones no other dominates."""
    kept = {id(r) for r in comparable(records)}  # one measurement level (tuner.front.levels)
    pool = [i for i, r in enumerate(records) if r.feasible and r.metrics and r.reused_from is None and id(r) in kept]
    points = [records[i].metrics.objective_values(objectives) for i in pool]  # type: ignore[union-attr]
    front = {pool[j] for j in pareto_indices(points, directions_for(objectives))}
    return [replace(r, pareto=True) if i in front else r for i, r in enumerate(records)]


def study_record(study: optuna.Study) -> StudyRecord:
    """Every trial of `study`, typed, with the feasible Pareto front marked."""
    finalists = study.user_attrs.get("finalists", {})
    objectives = list(study.metric_names or OBJECTIVES)
    records = mark_pareto([trial_record(t, finalists) for t in study.get_trials(deepcopy=False)], objectives)
    return StudyRecord(study.study_name, tuple(d.name.lower() for d in study.directions), tuple(objectives),
                       tuple(records))


def study_model(study: optuna.Study) -> PreparedModel:
    """The model the study was tuned on (its variants' files and accuracy)."""
    return PreparedModel.from_dict(study.user_attrs["model"])
