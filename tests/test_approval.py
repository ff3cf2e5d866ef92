"""The approval request promote --require-approval waits on (`tuner.deploy.approval`), on a real
SQLite storage: what a decision that is not Approve means, a request nobody answers, and a request
left open by a promote that was killed. The whole flow through the dashboard is in
test_promotion.py."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from test_report import make_study

from tuner.deploy.approval import record_decision, request_approval, wait_for_decision
from tuner.study.readback import study_record


def _request(tmp_path: Path):
    study = make_study(f"sqlite:///{tmp_path / 'a.db'}", "digits")
    trial = study_record(study).trial(1)
    assert trial is not None
    approvals, request = request_approval(study, trial, "policy 'cheapest'")
    return study, trial, approvals, request


def _note(approvals: optuna.Study, number: int) -> str:
    from optuna_dashboard import get_note

    return get_note(optuna.trial.Trial(approvals, approvals.trials[number]._trial_id))


def test_only_approve_releases_a_request(tmp_path: Path) -> None:
    study, trial, approvals, request = _request(tmp_path)
    request.set_user_attr("decision", "yes")  # not the form's value for Approve (1)
    request.set_user_attr("approver", "mallory")
    decision = wait_for_decision(approvals, request, trial, timeout_s=5, poll_s=0.05)
    assert decision is not None and not decision.approved and decision.by == "mallory"
    assert approvals.trials[request.number].state == TrialState.COMPLETE
    assert approvals.trials[request.number].values == [0.0]
    record_decision(study, decision)
    assert study.user_attrs["approvals"][-1]["approved"] is False


def test_a_request_nobody_answers_expires_and_says_so(tmp_path: Path) -> None:
    _, trial, approvals, request = _request(tmp_path)
    assert wait_for_decision(approvals, request, trial, timeout_s=0.3, poll_s=0.05) is None
    assert approvals.trials[request.number].state == TrialState.FAIL
    assert _note(approvals, request.number).startswith("**EXPIRED** no decision within 0 s")


def test_a_request_left_open_by_a_killed_promote_is_closed_by_the_next(tmp_path: Path) -> None:
    study, trial, approvals, first = _request(tmp_path)  # its promote "died": nobody waits on it
    again, second = request_approval(study, trial, "policy 'cheapest'")
    states = [t.state for t in again.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.RUNNING]  # one open request at a time
    assert again.user_attrs["companion_of"] == "digits" and second.number == first.number + 1
    assert _note(again, first.number).startswith("**ABANDONED**")


def test_a_users_own_study_named_like_the_requests_is_refused(tmp_path: Path) -> None:
    import pytest

    from tuner.errors import TunerError

    storage = f"sqlite:///{tmp_path / 'u.db'}"
    study = make_study(storage, "digits")
    mine = optuna.create_study(study_name="digits.approvals", storage=storage)
    mine.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trial = study_record(study).trial(1)
    assert trial is not None
    with pytest.raises(TunerError, match="is not tuner's approval requests"):
        request_approval(study, trial, "policy 'cheapest'")
    assert len(optuna.load_study(study_name="digits.approvals", storage=storage).trials) == 1
