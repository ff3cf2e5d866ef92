"""What a person sees in optuna-dashboard, read back through the dashboard's own HTTP API:
feasibility where it renders it, objective names, a note on every trial saying measured or
ESTIMATED, the study's note with tuner's front and its promotions, and the two companion
studies (tuner's measured figures, the FPGA estimates) listed beside the search study."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import requests
from test_report import make_study

from tuner.cli.report import run as report_cli

from helpers import free_port, start_tuner, stop, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """Every study the dashboard lists, by name, as its study-detail API returns it."""
    work = tmp_path_factory.mktemp("dash")
    storage = f"sqlite:///{work / 'study.db'}"
    study = make_study(storage, "digits", promotions=None)
    from tuner.study.companions import refresh_dashboard

    study.set_user_attr("promotions", [{"trial": 1, "reason": "cheapest feasible", "active": True,
                                        "time": "2026-12-01T20:00:00+00:00", "user": "ci"}])
    assert refresh_dashboard(study) == {"measured": 3, "estimated": 1}
    assert refresh_dashboard(study) == {"measured": 3, "estimated": 1}  # rebuilt, not appended to
    for _ in range(2):  # the second upload replaces the first
        assert report_cli(argparse.Namespace(study="digits", storage=storage, out=work / "report", artifacts=None)) == 0
    port = free_port()
    proc = start_tuner(Path(work), "dashboard", "--storage", storage, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/meta", proc)
        studies = requests.get(f"{base}/api/studies", timeout=10).json()["study_summaries"]
        details = {s["study_name"]: requests.get(f"{base}/api/studies/{s['study_id']}", timeout=30).json()
                   for s in studies}
        search = next(s for s in studies if s["study_name"] == "digits")
        details["digits"]["_files"] = {
            a["filename"]: requests.get(f"{base}/artifacts/{search['study_id']}/{a['artifact_id']}", timeout=30)
            for a in details["digits"]["artifacts"]}
        details["digits"]["_store"] = sorted(p.name for p in (work / "study.db.artifacts").iterdir())
        yield details
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def search(served: dict) -> dict:
    return served["digits"]


def test_feasibility_is_where_the_dashboard_reads_it(search: dict) -> None:
    trials = {t["number"]: t for t in search["trials"]}
    # make_study: #0 and #1 meet every constraint, #2 misses the 20 ms SLO, #5 cannot run
    assert trials[1]["constraints"] and all(v <= 0 for v in trials[1]["constraints"])
    assert any(v > 0 for v in trials[2]["constraints"])
    assert trials[5]["constraints"] == [1.0]
    assert search["objective_names"] == ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]


def test_every_trial_note_says_what_it_is_in_its_first_line(search: dict) -> None:
    first = {t["number"]: t["note"]["body"].splitlines()[0] for t in search["trials"] if t["note"]["body"]}
    assert first[1].startswith("**MEASURED (engine)** cpu int8 b16 2x1t") and "| feasible |" in first[1]
    assert first[2].startswith("**MEASURED") and "INFEASIBLE: latency" in first[2]
    assert first[3].startswith("**ESTIMATED (FPGA cost model, not a measurement)** fpga")
    assert first[5].startswith("**NOT RUNNABLE**") and "out of memory" in first[5]
    assert first[6].startswith("**REUSED** the measurement of trial #1")


def test_the_study_note_holds_tuners_front_and_the_promotions(search: dict) -> None:
    body = search["note"]["body"]
    assert "**Serving:** trial #1 (cpu int8 b16 2x1t)" in body
    measured = body[body.index("Measured front (2 trials"):body.index("Feasible front with the FPGA estimates")]
    assert "| #1 | cpu int8 b16 2x1t | 3,900 |" in measured  # the finalist's median, not its first 4,000
    assert "median of 4" in measured and "| #0 | cpu fp32 b1 1x1t |" in measured and "fpga" not in measured
    assert "ESTIMATED" in body and "trial #1 at 2026-12-01T20:00:00+00:00 by ci (active)" in body
    assert "**digits.measured** holds tuner's figures" in body


def test_the_report_opens_from_the_dashboard(search: dict) -> None:
    files = search["_files"]
    assert set(files) == {"report.html", "front_latency.png", "front_cost.png"}
    page = files["report.html"]
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Plotly.newPlot" in page.text
    assert 'src="plotly.min.js"' not in page.text and "data:image/png;base64," in page.text  # one file
    assert "cpu int8 b16 2x1t" in page.text
    for name, response in files.items():
        if name.endswith(".png"):
            assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(search["_store"]) == len(files)  # the first upload was removed from the store


def _attr(trial: dict, key: str):
    return next(a["value"] for a in trial["user_attrs"] if a["key"] == key)


def test_the_measured_companion_draws_tuners_figures_and_front(served: dict) -> None:
    assert set(served) == {"digits", "digits.measured", "digits.estimated"}
    measured = served["digits.measured"]
    by_search = {int(_attr(t, "search_trial")): t for t in measured["trials"]}
    # feasible measured trials only: #2 misses the SLO, #3 is an estimate, #5 cannot run, #6 is reused
    assert set(by_search) == {0, 1, 4}
    assert all(t["constraints"] and all(v <= 0 for v in t["constraints"]) for t in measured["trials"])
    assert float(by_search[1]["values"][0]) == 3900.0  # the finalist's median, not its first 4,000
    assert _attr(by_search[1], "figures") == "median of 4 re-measurements (finalist)"
    # the dashboard's Pareto set is tuner's measured front of make_study (#4 is dominated by #1)
    assert {int(_attr(t, "search_trial")) for t in measured["best_trials"]} == {0, 1}
    assert measured["objective_names"] == ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]
    assert measured["note"]["body"].startswith("**MEASURED: tuner's figures for digits.**")
    assert by_search[1]["note"]["body"].startswith("**MEASURED (engine)** cpu int8 b16 2x1t | 3,900 inf/s")


def test_the_estimated_companion_holds_the_fpga_estimates(served: dict) -> None:
    estimated = served["digits.estimated"]
    assert [int(_attr(t, "search_trial")) for t in estimated["trials"]] == [3]
    assert estimated["trials"][0]["note"]["body"].startswith("**ESTIMATED (FPGA cost model, not a measurement)**")
    assert estimated["note"]["body"].startswith("**ESTIMATED")


def test_tuners_commands_do_not_take_a_companion_for_a_study(tmp_path: Path) -> None:
    from tuner.cli.common import pick_study
    from tuner.study.companions import refresh_dashboard

    storage = f"sqlite:///{tmp_path / 'one.db'}"
    refresh_dashboard(make_study(storage, "only"))
    assert pick_study(None, storage).study_name == "only"  # three studies stored, one of them a search


def test_the_study_note_names_the_choice_before_any_promotion(tmp_path: Path) -> None:
    from tuner.study.dashboard_view import study_note
    from tuner.study.readback import study_record

    record = study_record(make_study(f"sqlite:///{tmp_path / 'n.db'}", "fresh"))
    assert "**Chosen** (not promoted yet): trial #1 (cpu int8 b16 2x1t), by promote's default policy" in study_note(
        record, [])
    # with an SLO #1 (p95 9 ms) misses, promote's default choice is #0 (p95 1.5 ms), and the note says so
    assert "**Chosen** (not promoted yet): trial #0 (cpu fp32 b1 1x1t)" in study_note(record, [], slo_ms=5.0)
    assert study_note(record, [], slo_ms=0.1).startswith("**fresh**") and "**Chosen:** nothing yet (" in study_note(
        record, [], slo_ms=0.1)


def test_a_users_own_study_with_a_companions_name_is_never_touched(tmp_path: Path) -> None:
    import optuna

    from tuner.study.companions import refresh_dashboard

    storage = f"sqlite:///{tmp_path / 'mine.db'}"
    mine = optuna.create_study(study_name="digits.measured", storage=storage)
    mine.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert refresh_dashboard(make_study(storage, "digits")) == {"measured": -1, "estimated": 1}
    assert len(optuna.load_study(study_name="digits.measured", storage=storage).trials) == 2


def test_tune_refuses_to_continue_a_companion(tmp_path: Path) -> None:
    import optuna
    from test_report import _model

    from tuner.errors import TunerError
    from tuner.prices import load_prices
    from tuner.spec.load import load_space
    from tuner.spec.measurement import LoadSpec
    from tuner.study.companions import refresh_dashboard
    from tuner.study.open import open_study
    from tuner.study.storage import open_storage

    storage = f"sqlite:///{tmp_path / 't.db'}"
    refresh_dashboard(make_study(storage, "digits"))
    with pytest.raises(TunerError, match=r"Pass --study digits to continue the search"):
        open_study("digits.measured", storage, open_storage(storage), _model(), load_space("default"),
                   load_prices(None), LoadSpec(), optuna.samplers.RandomSampler(0))
