"""Two studies the dashboard lists beside each search study, so that what it draws is what tuner
uses:

- ``NAME.measured``: the feasible measured trials of the front's level (served once the study
  has served figures), each with the figures tuner reports (a finalist's median, not its first
  measurement). Its Pareto set, as optuna-dashboard computes it, is tuner's measured front: the
  trials promote chooses from.
- ``NAME.estimated``: the FPGA trials, ESTIMATED by the cost model, feasible or not.

The search study keeps every trial as first measured (Optuna cannot change a finished trial,
and the sampler learns from it). The companions are rebuilt from it whenever tuner's figures
change (the end of `tuner tune`, each promotion), so their study ids change then; a person
finds them by name. tuner's own commands never list them as studies to tune or promote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection

from tuner.front.levels import comparable
from tuner.front.selection import measured_front
from tuner.record import StudyRecord, TrialRecord
from tuner.study.dashboard_view import DASHBOARD_CONSTRAINTS_KEY, measured_note, study_note

COMPANION_ATTR = "companion_of"  # user attribute of a companion study: the search study's name
MEASURED, ESTIMATED = "measured", "estimated"


def companion_name(study_name: str, kind: str) -> str:
    return f"{study_name}.{kind}"


def is_companion(user_attrs: dict) -> bool:
    return COMPANION_ATTR in user_attrs


def measured_rows(record: StudyRecord) -> list[TrialRecord]:
    """What `NAME.measured` holds: feasible, measured (not estimated), not reused, one level."""
    return [r for r in comparable(record.trials) if r.feasible and r.metrics is not None
            and not r.metrics.estimated and r.reused_from is None]


def estimated_rows(record: StudyRecord) -> list[TrialRecord]:
    return [r for r in record.trials if r.metrics is not None and r.metrics.estimated and r.reused_from is None]


def sync_companions(study: optuna.Study, record: StudyRecord, promotions: Sequence[dict]) -> dict[str, int]:
    """Rebuild both companions of `study` from `record` (tuner's figures); returns each one's
    number of trials (-1: the name belongs to a study that is not a companion, left alone; -2:
    another driver of the same study was rebuilding it at the same moment, and its copy stands)."""
    front = {r.number for r in measured_front(record.trials, record.objectives)}
    counts = {}
    for kind, rows in ((MEASURED, measured_rows(record)), (ESTIMATED, estimated_rows(record))):
        name = companion_name(study.study_name, kind)
        try:
            if not _clear(name, study):
                counts[kind] = -1  # the name is a study of the user's: left alone
                continue
            if not rows:
                counts[kind] = 0
                continue
            counts[kind] = _build(study, name, kind, rows, record, front, promotions)
        except (optuna.exceptions.DuplicatedStudyError, KeyError):
            counts[kind] = -2  # another driver of this study rebuilt it at the same moment: its copy stands
    return counts


def _build(study: optuna.Study, name: str, kind: str, rows: list[TrialRecord], record: StudyRecord, front: set[int],
           promotions: Sequence[dict]) -> int:
    companion = optuna.create_study(study_name=name, storage=study._storage,
                                    directions=[StudyDirection[d.upper()] for d in record.directions],
                                    sampler=optuna.samplers.RandomSampler(0))
    companion.set_metric_names(list(record.objectives))
    companion.set_user_attr(COMPANION_ATTR, study.study_name)
    companion.set_user_attr("holds", _holds(kind))
    params = [_params(row) for row in rows]
    dists: dict[str, BaseDistribution] = {
        k: CategoricalDistribution(sorted({p[k] for p in params if k in p})) for k in dict.fromkeys(
            k for p in params for k in p)}
    for row, row_params in zip(rows, params, strict=True):
        _add(companion, row, row_params, {k: dists[k] for k in row_params}, record.objectives)
    _save_note(companion, _note(study.study_name, kind, rows, front, promotions))
    return len(rows)


def _holds(kind: str) -> str:
    if kind == MEASURED:
        return ("feasible measured trials of one level, with tuner's figures (finalists: the median); "
                "its Pareto set is tuner's measured front")
    return "ESTIMATED by the FPGA cost model, not measurements"


def _clear(name: str, study: optuna.Study) -> bool:
    """Delete the earlier companion `name` of `study`; False (nothing deleted) when a study of
    that name is not this study's companion: a user's own study is never touched."""
    try:
        existing = optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:  # not made yet
        return True
    if existing.user_attrs.get(COMPANION_ATTR) != study.study_name:
        return False
    optuna.delete_study(study_name=name, storage=study._storage)
    return True


def _params(row: TrialRecord) -> dict[str, Any]:
    """The configuration as the companion's parameters (one name each, whatever the platform)."""
    assert row.config is not None
    c = row.config
    return {"platform": c.platform, "precision": c.precision, "batch_size": c.batch_size,
            "replicas": c.replicas, "threads_per_replica": c.threads_per_replica,
            **({"device": c.device} if c.device else {})}


def _add(companion: optuna.Study, row: TrialRecord, params: dict[str, Any], dists: dict[str, BaseDistribution],
         objectives: Sequence[str]) -> None:
    assert row.metrics is not None and row.config is not None
    m = row.metrics
    companion.enqueue_trial(params)
    trial = companion.ask(dists)
    figures = (f"median of {row.remeasured.samples} re-measurements (finalist)" if row.remeasured
               else "ESTIMATED" if m.estimated else "its one measurement")
    for key, value in (("search_trial", row.number), ("figures", figures), ("level", row.level or ""),
                       ("configuration", row.config.label()), *m.to_dict().items(), ("feasible", row.feasible),
                       ("disturbed", row.disturbed)):
        trial.set_user_attr(key, value)
    constraints = [float(v) for v in row.constraints.values()] or [0.0 if row.feasible else 1.0]
    trial.storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS_KEY, constraints)
    violated = [k for k, v in row.constraints.items() if v > 0]
    band = f"; expected error {m.error_band.label()}" if m.estimated and m.error_band else ""
    where = f"FPGA {row.config.device} (analytical DPU model{band})" if m.estimated else figures
    from optuna_dashboard import save_note

    save_note(trial, measured_note(row.config.label(), row.level or "engine", m.estimated, m.throughput_rps,
                                   m.latency_p95_ms, row.engine.throughput_rps if row.engine else None, violated,
                                   where, row.disturbed)
              + f"\n\nSearch trial #{row.number} of {companion.user_attrs[COMPANION_ATTR]}.")
    companion.tell(trial, m.objective_values(objectives))


def _note(search: str, kind: str, rows: list[TrialRecord], front: set[int], promotions: Sequence[dict]) -> str:
    if kind == MEASURED:
        head = (f"**MEASURED: tuner's figures for {search}.** Feasible measured trials only, each with the figures "
                "tuner shows and promote uses (a finalist's median, not its first measurement). The Pareto set "
                f"drawn here is tuner's measured front: {', '.join(f'#{n}' for n in sorted(front)) or 'none'} "
                f"(search trial numbers). Infeasible trials are drawn grey in the search study **{search}**; "
                f"FPGA estimates are in **{search}.estimated**.")
    else:
        head = (f"**ESTIMATED (FPGA cost model, not a measurement)** for {search}: {len(rows)} FPGA trial(s) "
                "priced by the analytical model; their accuracy was measured on the int8 model. "
                f"Measured trials are in **{search}.measured**.")
    lines = [head]
    if promotions:
        lines += ["", "Promotions (newest last):", ""]
        lines += [f"- search trial #{p.get('trial')} at {p.get('time', '?')}"
                  f"{' (active)' if p.get('active') else ''}: {p.get('reason', '')}" for p in promotions]
    return "\n".join(lines)


def _save_note(study: optuna.Study, body: str) -> None:
    from optuna_dashboard import save_note

    save_note(study, body)


def refresh_dashboard(study: optuna.Study) -> dict[str, int]:
    """After tuner's figures changed: the search study's note, and both companions rebuilt."""
    from tuner.study.readback import study_record

    record = study_record(study)
    promotions = list(study.user_attrs.get("promotions", []))
    slo_ms = study.user_attrs.get("search_space", {}).get("constraints", {}).get("latency_p95_ms_max")
    _save_note(study, study_note(record, promotions, list(study.user_attrs.get("approvals", [])), slo_ms))
    return sync_companions(study, record, promotions)
