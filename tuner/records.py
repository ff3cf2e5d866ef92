"""Read a study back: one plain record per trial, as `tuner show --json` prints it.

The driver writes these user attributes on every trial (also what the dashboard shows):
``config`` (dict), ``artifact`` (path), the metric keys flat (``throughput_rps``, ...,
``estimated``), ``feasible``, ``constraint.<name>``, ``measurement`` (dict), ``price``
(dict with its source), and ``failure`` for a FAIL trial.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.metrics import METRIC_KEYS, OBJECTIVES
from tuner.models.spec import PreparedModel

CONFIG_KEYS = ("platform", "batch_size", "precision", "replicas", "threads_per_replica")


def trial_record(trial: FrozenTrial, pareto: set[int]) -> dict[str, Any]:
    attrs = trial.user_attrs
    config = attrs.get("config") or {}
    complete = trial.state == TrialState.COMPLETE and "throughput_rps" in attrs
    return {
        "number": trial.number,
        "state": trial.state.name,
        "pareto": trial.number in pareto,
        "feasible": bool(attrs.get("feasible", False)) if complete else False,
        "config": {k: config.get(k) for k in CONFIG_KEYS},
        "device": config.get("device"),
        "metrics": {k: attrs.get(k) for k in METRIC_KEYS} if complete else None,
        "constraints": {k[len("constraint."):]: v for k, v in attrs.items() if k.startswith("constraint.")},
        "artifact": attrs.get("artifact"),
        "failure": attrs.get("failure"),
    }


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Numbers of the feasible Pareto-optimal trials (Optuna's best_trials are feasible only)."""
    try:
        return {t.number for t in study.best_trials}
    except ValueError:  # no complete trials yet
        return set()


def study_record(study: optuna.Study) -> dict[str, Any]:
    pareto = pareto_numbers(study)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "objectives": study.metric_names or list(OBJECTIVES),
        "trials": [trial_record(t, pareto) for t in study.get_trials(deepcopy=False)],
    }


def study_model(study: optuna.Study) -> PreparedModel:
    return PreparedModel.from_dict(study.user_attrs["model"])


