"""What a person sees in optuna-dashboard, read back through the dashboard's own HTTP API:
feasibility where it renders it, objective names, a note on every trial saying measured or
ESTIMATED, and the study's note with tuner's front and its promotions."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from test_report import make_study

from helpers import free_port, start_tuner, stop, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("dash")
    storage = f"sqlite:///{work / 'study.db'}"
    study = make_study(storage, "digits", promotions=None)
    from tuner.study.dashboard_view import save_study_note

    study.set_user_attr("promotions", [{"trial": 1, "reason": "cheapest feasible", "active": True,
                                        "time": "2026-12-01T20:00:00+00:00", "user": "ci"}])
    save_study_note(study)
    port = free_port()
    proc = start_tuner(Path(work), "dashboard", "--storage", storage, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/meta", proc)
        studies = requests.get(f"{base}/api/studies", timeout=10).json()["study_summaries"]
        detail = requests.get(f"{base}/api/studies/{studies[0]['study_id']}", timeout=30).json()
        yield detail
    finally:
        stop(proc)


def test_feasibility_is_where_the_dashboard_reads_it(served: dict) -> None:
    trials = {t["number"]: t for t in served["trials"]}
    # make_study: #0 and #1 meet every constraint, #2 misses the 20 ms SLO, #5 cannot run
    assert trials[1]["constraints"] and all(v <= 0 for v in trials[1]["constraints"])
    assert any(v > 0 for v in trials[2]["constraints"])
    assert trials[5]["constraints"] == [1.0]
    assert served["objective_names"] == ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]


def test_every_trial_note_says_what_it_is_in_its_first_line(served: dict) -> None:
    first = {t["number"]: t["note"]["body"].splitlines()[0] for t in served["trials"] if t["note"]["body"]}
    assert first[1].startswith("**MEASURED (engine)** cpu int8 b16 2x1t") and "| feasible |" in first[1]
    assert first[2].startswith("**MEASURED") and "INFEASIBLE: latency" in first[2]
    assert first[3].startswith("**ESTIMATED (FPGA cost model, not a measurement)** fpga")
    assert first[5].startswith("**NOT RUNNABLE**") and "out of memory" in first[5]
    assert first[6].startswith("**REUSED** the measurement of trial #1")


def test_the_study_note_holds_tuners_front_and_the_promotions(served: dict) -> None:
    body = served["note"]["body"]
    assert "feasible Pareto front as tuner reports it" in body
    assert "| #1 | cpu int8 b16 2x1t | 3,900 |" in body  # the finalist's median, not its first 4,000
    assert "ESTIMATED" in body and "trial #1 at 2026-12-01T20:00:00+00:00 by ci (active)" in body
