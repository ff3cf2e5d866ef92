"""What optuna-dashboard shows of a trial: its feasibility where the dashboard reads it, and a
note whose first line says what the trial is, whether it was measured or ESTIMATED, and how.

- optuna-dashboard 0.21 renders feasibility from the trial system attribute ``constraints``
  (a list; feasible when every value <= 0), which Optuna 5's ``set_constraint`` does not write
  (it writes ``constraints:<name>``), so both are written.
- The note (optuna-dashboard's ``save_note``, Markdown) is what a person reads first in the
  trial's pane; an estimate says ESTIMATED in its first word.
"""

from __future__ import annotations

from collections.abc import Mapping

import optuna

from tuner.errors import TunerError
from tuner.front.selection import DEFAULT_POLICY, SERVABLE, choose, measured_front
from tuner.metrics import Metrics
from tuner.record import StudyRecord

DASHBOARD_CONSTRAINTS_KEY = "constraints"  # optuna_dashboard._serializer.CONSTRAINTS_KEY


def set_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> None:
    """Optuna's constraints (for the sampler), the dashboard's list and a user attribute each."""
    for name, value in constraints.items():
        trial.set_constraint(name, value)
        trial.set_user_attr(f"constraint.{name}", value)
    trial.storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS_KEY,
                                        [float(v) for v in constraints.values()])


def measured_note(config: str, level: str, estimated: bool, throughput_rps: float, p95_ms: float,
                  engine_rps: float | None, violated: list[str], where: str, disturbed: bool = False) -> str:
    """The first line of a trial's note, e.g. `**MEASURED (served)** cpu fp32 b16 2x1t | 20 inf/s,
    p95 3832 ms (engine 22 inf/s) | feasible | on <hardware>`."""
    status = "ESTIMATED (FPGA cost model, not a measurement)" if estimated else f"MEASURED ({level})"
    engine = f" (engine {engine_rps:,.0f} inf/s)" if engine_rps else ""
    feasible = "feasible" if not violated else "INFEASIBLE: " + ", ".join(violated)
    noise = " | DISTURBED by other work on this machine (below)" if disturbed else ""
    return (f"**{status}** {config} | {throughput_rps:,.0f} inf/s, p95 {p95_ms:.3f} ms{engine} | {feasible}{noise} "
            f"| {where}")


def save_trial_note(trial: optuna.Trial, first_line: str, details: list[str] | None = None) -> None:
    """The trial's note in optuna-dashboard: the first line, then details (Markdown)."""
    from optuna_dashboard import save_note

    save_note(trial, "\n\n".join([first_line, *(details or [])]))


def study_note(record: StudyRecord, promotions: list[dict], approvals: list[dict] | None = None,
               slo_ms: float | None = None) -> str:
    """The study's note: what this study and its companions hold, the chosen configuration, the
    measured front (what promote chooses from) and the whole feasible front (ESTIMATED rows
    marked), finalists as medians; then the promotions and the decisions taken in the dashboard.
    `slo_ms`: the study's p95 SLO, which promote's default choice honours."""
    measured = measured_front(record.trials, record.objectives)
    lines = [f"**{record.study}** is the search's record: its plots draw each trial as first measured, FPGA "
             f"estimates among them. **{record.study}.measured** holds tuner's figures (feasible measured trials, "
             f"finalists as the median of their re-measurements; its Pareto set is the measured front below) and "
             f"**{record.study}.estimated** the FPGA trials, ESTIMATED by the cost model.", "",
             _chosen(record, promotions, slo_ms), "",
             f"Measured front ({len(measured)} trials: what promote chooses from on a machine with CPUs and GPUs):",
             "", *_table(measured)]
    if any(t.metrics and t.metrics.estimated for t in record.front):
        lines += ["", f"Feasible front with the FPGA estimates ({len(record.front)} trials; ESTIMATED rows come from "
                      "the FPGA cost model, not a measurement, with its expected error on that board: typical and "
                      "worst factor either way; uncalibrated = a board with no published figures of its own, which "
                      "carries the widest band of the boards that have):", "", *_table(record.front)]
    if promotions:
        lines += ["", "Promotions (newest last):", ""]
        lines += [f"- trial #{p.get('trial')} at {p.get('time', '?')} by {p.get('user', '?')}"
                  f"{' (active)' if p.get('active') else ''}: {p.get('reason', '')}"
                  f"{_approved(p['approval']) if isinstance(p.get('approval'), dict) else ''}" for p in promotions]
    if approvals:
        lines += ["", f"Decisions in the dashboard (newest last; the requests are in **{record.study}.approvals**):", ""]
        lines += [f"- search trial #{a.get('search_trial')}: {'APPROVED' if a.get('approved') else 'REJECTED'} by "
                  f"{a.get('by', '?')} at {a.get('at', '?')}" + (f" ({a['reason']})" if a.get("reason") else "")
                  for a in approvals]
    return "\n".join(lines)


def _chosen(record: StudyRecord, promotions: list[dict], slo_ms: float | None) -> str:
    live = [p for p in promotions if p.get("active")]
    if live:
        t = record.trial(int(live[-1]["trial"]))
        label = t.config.label() if t and t.config else "?"
        return f"**Serving:** trial #{live[-1]['trial']} ({label}), promoted {live[-1].get('time', '?')}."
    try:
        choice = choose(record.trials, DEFAULT_POLICY, SERVABLE, slo_ms=slo_ms, objectives=record.objectives)
    except TunerError as exc:
        return f"**Chosen:** nothing yet ({exc})"
    label = choice.trial.config.label() if choice.trial.config else "?"
    return (f"**Chosen** (not promoted yet): trial #{choice.trial.number} ({label}), by promote's default policy: "
            f"{choice.reason}.")


def _table(rows) -> list[str]:
    out = ["| trial | configuration | inf/s | p95 ms | $ per M | accuracy | figures |", "|---|---|---|---|---|---|---|"]
    for t in rows:
        if t.metrics is None or t.config is None:
            continue
        m = t.metrics
        kind = _estimated(m) if m.estimated else f"{t.level or 'measured'}" + (
            f", median of {t.remeasured.samples}" if t.remeasured else "") + (", DISTURBED" if t.disturbed else "")
        out.append(f"| #{t.number} | {t.config.label()} | {m.throughput_rps:,.0f} | {m.latency_p95_ms:.3f} | "
                   f"{m.cost_usd_per_million:.5f} | {m.accuracy:.4f} | {kind} |")
    return out


def _estimated(m: Metrics) -> str:
    """How an estimate's row is marked: ESTIMATED, with its expected error where it has one."""
    band = m.error_band
    if band is None:
        return "ESTIMATED"
    return f"ESTIMATED, {band.label()}"


def _approved(approval: dict) -> str:
    return f"; approved by {approval.get('by', '?')} at {approval.get('at', '?')}"
