"""Read a study back: one plain record per trial, as `tuner show --json` prints it.

The driver writes these user attributes on every trial (also what the dashboard shows):
``config`` (dict), ``artifact`` (path), the metric keys flat (``throughput_rps``, ...,
``estimated``), ``feasible``, ``constraint.<name>``, ``measurement`` (dict), ``price``
(dict with its source), ``failure`` for a trial that could not run, and ``reused_from``
for a configuration whose earlier measurement was reused.

Reported metrics are the first measurement, except for finalists (study attribute
``finalists``): there, the median of all their measurements. `pareto` is the front of the
reported metrics among feasible, COMPLETE, non-reused trials.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.metrics import METRIC_KEYS, OBJECTIVES, directions_for
from tuner.models.spec import PreparedModel
from tuner.front.pareto import pareto_indices

CONFIG_KEYS = ("platform", "batch_size", "precision", "replicas", "threads_per_replica")


def trial_record(trial: FrozenTrial, finalists: dict[str, Any]) -> dict[str, Any]:
    attrs = trial.user_attrs
    config = attrs.get("config") or {}
    measured = trial.state == TrialState.COMPLETE and "throughput_rps" in attrs
    metrics = {k: attrs.get(k) for k in METRIC_KEYS} if measured else None
    feasible = bool(attrs.get("feasible", False)) if trial.state == TrialState.COMPLETE else False
    constraints = {k[len("constraint."):]: v for k, v in attrs.items() if k.startswith("constraint.")}
    final = finalists.get(str(trial.number))
    rec = {
        "number": trial.number,
        "state": trial.state.name,
        "pareto": False,
        "feasible": feasible,
        "config": {k: config.get(k) for k in CONFIG_KEYS},
        "device": config.get("device"),
        "metrics": metrics,
        "constraints": constraints,
        "artifact": attrs.get("artifact"),
        "failure": attrs.get("failure"),
        "reused_from": attrs.get("reused_from"),
        "remeasured": None,
    }
    if final and measured:
        rec["metrics"] = dict(final["metrics"])
        rec["feasible"] = bool(final["feasible"])
        rec["constraints"] = dict(final["constraints"])
        rec["remeasured"] = {"samples": final["samples"], "spread": final["spread"],
                             "throughput_cv": final["throughput_cv"], "first_measurement": metrics}
    return rec


def mark_pareto(records: list[dict[str, Any]], objectives: list[str]) -> None:
    """Set `pareto` on the feasible, measured, non-reused records that no other dominates."""
    pool = [r for r in records if r["feasible"] and r["metrics"] and r["reused_from"] is None]
    points = [[r["metrics"][k] for k in objectives] for r in pool]
    for i in pareto_indices(points, directions_for(objectives)):
        pool[i]["pareto"] = True


def study_record(study: optuna.Study) -> dict[str, Any]:
    finalists = study.user_attrs.get("finalists", {})
    records = [trial_record(t, finalists) for t in study.get_trials(deepcopy=False)]
    objectives = study.metric_names or list(OBJECTIVES)
    mark_pareto(records, objectives)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "objectives": objectives,
        "trials": records,
    }


def study_model(study: optuna.Study) -> PreparedModel:
    return PreparedModel.from_dict(study.user_attrs["model"])
