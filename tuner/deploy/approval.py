"""`tuner promote --require-approval`: a person approves or rejects the chosen trial in the dashboard.

optuna-dashboard draws a user-attribute form (its human-in-the-loop widgets) only on a RUNNING
trial, and a finished search trial cannot run again. So the request is a running trial of the
companion study ``NAME.approvals``, carrying the chosen configuration and its figures, with a form
of three fields: a decision (Reject is preselected), the approver's name and a reason. Submitting the form
(the dashboard posts the trial's user attributes) ends the wait: promote deploys or stops. The
request is then finished (value 1 approved, 0 rejected) and the decision recorded on the search
study (user attribute ``approvals``) with who and when.

The dashboard has no login: "who" is the name the person types, and "when" is the time promote
read the decision. Bind the dashboard to 127.0.0.1 (the default) or put it behind one.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import optuna
from optuna.trial import TrialState

from tuner.errors import TunerError
from tuner.record import TrialRecord
from tuner.study.companions import COMPANION_ATTR, companion_name

APPROVALS = "approvals"
DECISION, APPROVER, REASON = "decision", "approver", "reason"
APPROVE, REJECT = 1.0, 0.0


@dataclass(frozen=True)
class Decision:
    approved: bool
    by: str
    at: str  # when promote read it (UTC, ISO 8601)
    reason: str
    request: int  # the request's trial number in NAME.approvals
    search_trial: int

    def to_dict(self) -> dict:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def approvals_study(study: optuna.Study) -> optuna.Study:
    """NAME.approvals, with its form (made on first use)."""
    from optuna_dashboard import ChoiceWidget, TextInputWidget, register_user_attr_form_widgets

    approvals = optuna.create_study(study_name=companion_name(study.study_name, APPROVALS), storage=study._storage,
                                    direction="maximize", load_if_exists=True, sampler=optuna.samplers.RandomSampler(0))
    owner = approvals.user_attrs.get(COMPANION_ATTR)
    if owner is None and approvals.get_trials(deepcopy=False):
        raise TunerError(
            f"The storage holds a study {approvals.study_name!r} that is not tuner's approval requests for "
            f"{study.study_name!r}. Rename that study (or promote without --require-approval).")
    if owner is None:
        approvals.set_metric_names(["approved (1 yes, 0 no)"])
        approvals.set_user_attr(COMPANION_ATTR, study.study_name)
        approvals.set_user_attr("holds", "promotions awaiting a person's decision, and the decisions taken")
        register_user_attr_form_widgets(approvals, [
            ChoiceWidget(choices=["Reject", "Approve"], values=[REJECT, APPROVE], user_attr_key=DECISION,
                         description="deploy this configuration?"),
            TextInputWidget(description="your name (recorded as the approver)", user_attr_key=APPROVER),
            TextInputWidget(description="reason (optional)", user_attr_key=REASON, optional=True),
        ])
    return approvals


def request_approval(study: optuna.Study, trial: TrialRecord, reason: str) -> tuple[optuna.Study, optuna.Trial]:
    """Open a request for `trial` (a running trial with the form); earlier requests left open by
    a promote that was killed are closed as abandoned."""
    from optuna_dashboard import save_note

    approvals = approvals_study(study)
    for stale in approvals.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        save_note(optuna.trial.Trial(approvals, stale._trial_id),
                  "**ABANDONED** the promote that asked stopped waiting (it was killed); closed when a new request "
                  "opened. Nothing was deployed from it.")
        approvals.tell(stale.number, state=TrialState.FAIL)
    assert trial.config is not None and trial.metrics is not None
    m = trial.metrics
    request = approvals.ask()
    figures = (f"{m.throughput_rps:,.0f} inf/s, p95 {m.latency_p95_ms:.3f} ms, ${m.cost_usd_per_million:.5f} per million, "
               f"accuracy {m.accuracy:.4f} ({trial.level or 'engine'})")
    for key, value in (("search_trial", trial.number), ("configuration", trial.config.label()), ("figures", figures),
                       ("policy", reason), ("requested_by", getpass.getuser()), ("requested_at", _now())):
        request.set_user_attr(key, value)
    save_note(request, f"**AWAITING APPROVAL** promote search trial #{trial.number} of {study.study_name}: "
                       f"{trial.config.label()} | {figures} | chosen as {reason}\n\n"
                       "Choose Approve or Reject in the form below, type your name, and submit: "
                       "`tuner promote` is waiting and deploys (or stops) as soon as it reads the decision.")
    return approvals, request


def wait_for_decision(approvals: optuna.Study, request: optuna.Trial, trial: TrialRecord, timeout_s: float | None,
                      poll_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> Decision | None:
    """Poll the request until its form is submitted; None after `timeout_s` (the request is then
    closed as expired). Ctrl-C closes it too, and is raised on."""
    from optuna_dashboard import save_note

    deadline = None if timeout_s is None else clock() + timeout_s
    try:
        while True:
            attrs = approvals._storage.get_trial(request._trial_id).user_attrs
            if DECISION in attrs:
                break
            if deadline is not None and clock() >= deadline:
                save_note(request, f"**EXPIRED** no decision within {timeout_s:.0f} s: nothing was deployed.")
                approvals.tell(request, state=TrialState.FAIL)
                return None
            time.sleep(poll_s)
    except KeyboardInterrupt:
        save_note(request, "**ABANDONED** promote was stopped while waiting: nothing was deployed.")
        approvals.tell(request, state=TrialState.FAIL)
        raise
    value = attrs[DECISION]
    approved = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == APPROVE
    decision = Decision(approved, str(attrs.get(APPROVER) or "?"), _now(), str(attrs.get(REASON) or ""),
                        request.number, trial.number)
    verdict = "APPROVED" if approved else "REJECTED"
    save_note(request, f"**{verdict}** by {decision.by} at {decision.at}: search trial #{trial.number} "
                       f"({trial.config.label() if trial.config else '?'})"
                       f"{'' if approved else ', nothing deployed'}{f' | {decision.reason}' if decision.reason else ''}")
    approvals.tell(request, APPROVE if approved else REJECT)
    return decision


def record_decision(study: optuna.Study, decision: Decision) -> None:
    """On the search study: every decision, newest last."""
    study.set_user_attr(APPROVALS, [*study.user_attrs.get(APPROVALS, []), decision.to_dict()])
