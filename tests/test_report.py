"""`tuner report`: a real SQLite study with the attributes tuner writes -> HTML page and PNGs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image

from tuner.cli.report import add_parser, run
from tuner.config import TrialConfig
from tuner.metrics import OBJECTIVES, Constraints, ErrorBand, Metrics, PerfResult
from tuner.models.accuracy import FIDELITY_DESCRIPTION, TOP1_DESCRIPTION
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.prices import load_prices
from tuner.record import StudyRecord
from tuner.report import report_of_study, write_report
from tuner.report.build import build_report
from tuner.report.plots import plotly_figure
from tuner.spec.load import load_space
from tuner.study.outcome import (
    copy_measurement,
    make_outcome,
    record,
    record_not_runnable,
)
from tuner.study.readback import study_record

EVIL_NAME = '<script>alert("study")</script> & co'
EVIL_SOURCE = "<img src=x onerror=alert(1)> our quote, 2026"
SLO_MS = 20.0
# (config, throughput_rps, p95 ms, estimated); cost follows from the price table as in tuner.
TRIALS = [
    (TrialConfig("cpu", 1, "fp32", 1, 1), 900.0, 1.5, False),                     # 0 front: lowest p95
    (TrialConfig("cpu", 16, "int8", 2, 1), 4000.0, 9.0, False),                   # 1 front, finalist, chosen
    (TrialConfig("cpu", 64, "fp32", 1, 1), 2500.0, 35.0, False),                  # 2 misses the 20 ms SLO
    (TrialConfig("fpga", 8, "int8", 4, 1, "aws-f1"), 100000.0, 12.0, True),       # 3 front, ESTIMATED, cheapest
    (TrialConfig("cpu", 4, "fp16", 2, 2), 1500.0, 12.0, False),                   # 4 dominated by #1
]
BAND = ErrorBand(1.15, 1.46, True, 12, "aws-f1's own published figures left out of its fit")
BAND_CELL = "ESTIMATED (est.)</span> FPGA cost model, x1.15 typical, x1.46 worst (calibrated)"


def _model(metric: str = "top1_accuracy") -> PreparedModel:
    variants = {p: Variant(p, f"/nonexistent/{p}.onnx", p[0] * 64, acc)
                for p, acc in (("fp32", 0.97), ("fp16", 0.97), ("int8", 0.965))}
    desc = TOP1_DESCRIPTION if metric == "top1_accuracy" else FIDELITY_DESCRIPTION
    return PreparedModel("digits-cnn", "builtin", (InputSpec("x", (1, 8, 8), "float32"),), metric, desc, variants)


def make_study(storage: str, name: str, promotions: list[dict] | None = None) -> optuna.Study:
    """A study as `tuner tune` leaves it: study attrs, trial attrs via tuner.study.outcome.record, a finalist."""
    model = _model()
    prices = load_prices({"cpu.vcpu": {"usd_per_hour": 0.0425, "source": EVIL_SOURCE}})
    constraints = Constraints(0.99, SLO_MS)
    space = load_space("default").model_dump(mode="json", exclude_none=True)
    space["constraints"] = {"accuracy_min_ratio": 0.99, "latency_p95_ms_max": SLO_MS}
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(list(OBJECTIVES))
    for key, value in {"model": model.to_dict(), "fp32_accuracy": 0.97, "accuracy_metric": model.accuracy_metric,
                       "search_space": space, "prices": prices.to_dict(), "load": {"mode": "offline"},
                       "runs": [{"started": "2026-01-02T03:04:05+00:00", "wall_s": 61.5, "peak_memory_gib": 1.234,
                                 "parallel": 1, "measured": 5, "reused": 1, "not_runnable": 1, "failed": 1,
                                 "host_before": {"cpus": 2, "busy_share": 0.5, "sample_s": 1.0, "busy_cores": 1.0,
                                                 "busy": True, "mem_available_gib": 20.5, "mem_total_gib": 23.4}}]}.items():
        study.set_user_attr(key, value)
    for config, tput, p95, estimated in TRIALS:
        trial = study.ask()
        trial.set_user_attr("config", config.to_dict())
        perf = PerfResult(tput, p95 * 0.6, p95, p95 * 1.2, estimated, {"error_band": BAND.to_dict()} if estimated else {})
        outcome = make_outcome(config, perf, model, prices, constraints)
        study.tell(trial, record(trial, outcome, f"key-{trial.number}", list(OBJECTIVES)))
    trial = study.ask()  # 5: out of memory
    trial.set_user_attr("config", TrialConfig("cpu", 256, "fp32", 8, 8).to_dict())
    study.tell(trial, record_not_runnable(trial, "out of memory", "key-oom", list(OBJECTIVES)))
    trial = study.ask()  # 6: same configuration as #1, measurement reused
    trial.set_user_attr("config", TRIALS[1][0].to_dict())
    study.tell(trial, copy_measurement(trial, study.trials[1]))
    study.tell(study.ask(), state=TrialState.FAIL)  # 7: crashed
    median = Metrics(3900.0, 5.2, 9.4, 11.0, 0.965, 2 * 0.0425 / (3900.0 * 3600) * 1e6, False)
    study.set_user_attr("finalists", {"1": {
        "samples": 4, "metrics": median.to_dict(), "throughput_cv": 0.021,
        "spread": {"throughput_rps": [3810.0, 4000.0], "latency_p95_ms": [9.0, 9.9],
                   "cost_usd_per_million": [0.0059, 0.0062]},
        "constraints": constraints.values(median, 0.97), "feasible": True}})
    if promotions is not None:
        study.set_user_attr("promotions", promotions)
    return study


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'tuner.db'}"
    make_study(url, EVIL_NAME)
    make_study(url, "promoted", promotions=[
        {"time": "2026-01-03T10:00:00+00:00", "user": "bob", "trial": 0, "policy": "lowest-latency",
         "reason": "first try", "verdict": "rolled back", "served": {"latency_p95_ms": 1.9}},
        {"time": "2026-01-04T10:00:00+00:00", "user": "alice", "trial": 1, "policy": "cheapest",
         "reason": "cheapest meeting the SLO", "verdict": "verified", "served": {"throughput_rps": 3875.0},
         "trial_figures": {"throughput_rps": 3900.0}}])
    return url


@pytest.fixture(scope="module")
def written(storage: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("out") / "report"
    args = argparse.Namespace(study=EVIL_NAME, storage=storage, out=out, artifacts=None)
    assert run(args) == 0
    return out, (out / "index.html").read_text(encoding="utf-8")


def test_page_shows_the_front_with_estimates_marked(written: tuple[Path, str]) -> None:
    out, page = written
    front = page.split("<h2>Feasible Pareto trials</h2>")[1].split("<details>")[0]
    assert re.findall(r"#(\d+) ", front) == ["3", "1", "0"]  # fastest first; #2, #4 are not on the front
    assert "#3 fpga[aws-f1] int8 b8 4 cores <span class=est>(est.)</span>" in front
    assert "ESTIMATED (est.)" in front
    assert BAND_CELL in front  # the estimate's expected error beside it
    assert front.count("x1.15 typical") == 1  # measured rows carry no band
    assert 'id="pareto-plot"' in page and "Plotly.newPlot" in page
    assert "feasible Pareto front (est.)" in page  # the legend entry of the FPGA estimate
    assert "<td>infeasible: latency_p95_ms over by 15</td>" in page  # #2, in the table of all trials
    chosen = page.split("<h2>Chosen configuration</h2>")[1].split("<h2>")[0]
    assert "p95 &lt;= 20.0 ms" in chosen or "p95 <= 20.0 ms" in chosen  # the study's SLO, as promote honours it
    assert "no p95 SLO set" not in chosen


def test_page_is_offline_plotly_js_is_written_next_to_it(written: tuple[Path, str]) -> None:
    out, page = written
    assert '<script src="plotly.min.js"></script>' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything remote"
    assert (out / "plotly.min.js").stat().st_size > 1_000_000


def test_user_data_is_escaped(written: tuple[Path, str]) -> None:
    _, page = written
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;study&quot;)&lt;/script&gt; &amp; co" in page
    assert "&lt;img src=x onerror=alert(1)&gt; our quote, 2026" in page  # the price source, kept readable


def test_cost_table_lists_rows_with_sources_used_rows_first(written: tuple[Path, str]) -> None:
    _, page = written
    prices = page.split("<h2>Cost: prices used</h2>")[1].split("<h2>")[0]
    keys = re.findall(r"<tr><td>([a-z0-9.-]+)</td>", prices)
    assert keys[:2] == ["cpu.vcpu", "fpga.aws-f1"] and "gpu.t4" in keys
    assert "AWS f1.2xlarge on-demand us-east-1 $1.65/h" in prices
    assert "<td class=n>0.0425</td>" in prices and "<td class=n>1.6500</td>" in prices


def test_accuracy_table_names_the_metric_and_its_definition(written: tuple[Path, str]) -> None:
    _, page = written
    acc = page.split("<h2>Accuracy of each precision</h2>")[1].split("<h2>")[0]
    assert "<b>top-1 accuracy</b>" in acc and TOP1_DESCRIPTION in acc
    assert re.findall(r"<tr><td>(\w+)</td><td class=n>([\d.]+)</td>", acc) == [
        ("fp32", "0.9700"), ("fp16", "0.9700"), ("int8", "0.9650")]


def test_choice_without_promotion_is_the_cheapest_servable_trial(written: tuple[Path, str], storage: str) -> None:
    report = report_of_study(optuna.load_study(study_name=EVIL_NAME, storage=storage))
    assert report.chosen is not None and report.chosen.source == "policy"
    assert report.chosen.number == 1  # #3 (FPGA) is cheaper but cannot be served here
    assert [p.number for p in report.chosen.runners_up] == [0]
    assert "Trial #3" in report.chosen.note and "(est.)" in report.chosen.note
    _, page = written
    assert "no promotion recorded yet" in page and "Runners-up" in page


def test_finalist_shows_its_median_and_range(written: tuple[Path, str]) -> None:
    _, page = written
    row = next(r for r in re.findall(r"<tr[ >].*?</tr>", page) if "#1 cpu int8 b16 2x1t" in r)
    assert "3,900 (3,810–4,000)" in row and "median of 4 runs, cv 2.1%" in row
    assert "BUSY: 1.0 of 2 cores used by other work, 20.5 GiB memory available" in page  # the run's machine


def test_facts_count_every_kind_of_trial(storage: str) -> None:
    report = report_of_study(optuna.load_study(study_name=EVIL_NAME, storage=storage))
    c = report.facts.counts
    assert (c["trials"], c["complete"], c["failed"], c["not_runnable"], c["reused"]) == (8, 7, 1, 1, 1)
    assert (c["estimated"], c["pareto"], c["infeasible"], c["finalists"]) == (1, 3, 1, 1)
    assert report.facts.runs[0]["peak_memory_gib"] == 1.234


def test_latest_promotion_is_the_choice_and_history_is_newest_first(storage: str, tmp_path: Path) -> None:
    assert run(argparse.Namespace(study="promoted", storage=storage, out=tmp_path, artifacts=None)) == 0
    page = (tmp_path / "index.html").read_text()
    chosen = page.split("<h2>Chosen configuration</h2>")[1].split("<h2>")[0]
    assert "#1 cpu int8 b16 2x1t" in chosen and "alice" in chosen and "cheapest meeting the SLO" in chosen
    assert "verified" in chosen and "throughput_rps 3,875" in chosen
    history = page.split("<h2>Promotion history</h2>")[1].split("<h2>")[0]
    assert history.index("alice") < history.index("bob") and "rolled back" in history


def test_plot_fades_infeasible_and_marks_estimates(storage: str) -> None:
    report = report_of_study(optuna.load_study(study_name=EVIL_NAME, storage=storage))
    traces = {t.name: t for t in plotly_figure(report).data if t.showlegend}
    assert set(traces) == {"feasible Pareto front", "feasible Pareto front (est.)", "feasible, dominated",
                           "infeasible", "chosen: #1"}
    est = traces["feasible Pareto front (est.)"]
    assert est.marker.symbol == "diamond" and "(est.)" in est.text[0]
    assert "expected error x1.15 typical, x1.46 worst (calibrated)" in est.text[0]
    # bars over the typical band, in both panels: p95 12 ms spans 12 / 1.15 to 12 * 1.15 (x of the first)
    assert est.error_x.arrayminus[0] == pytest.approx(12 - 12 / 1.15) and est.error_x.array[0] == pytest.approx(12 * 0.15)
    assert traces["feasible Pareto front"].error_x.array is None  # measured points: no bars
    assert traces["infeasible"].marker.opacity < traces["feasible Pareto front"].marker.opacity
    assert list(traces["infeasible"].x) == [35.0]  # p95 of #2
    assert "violates latency_p95_ms by 15" in traces["infeasible"].text[0]


def test_pngs_are_valid_images_referenced_by_the_page(written: tuple[Path, str]) -> None:
    out, page = written
    for name in ("front_latency.png", "front_cost.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / name) as img:
            assert img.size[0] >= 600 and img.size[1] >= 400
            dark = int((np.asarray(img.convert("L")) < 200).sum())
        assert dark > 2000, f"{name} looks blank"
        assert f'href="{name}"' in page and f'src="{name}"' in page


def test_fidelity_model_says_so() -> None:
    attrs = {"model": _model("fidelity").to_dict(), "search_space": {"constraints": {"accuracy_min_ratio": 0.995}}}
    rec = StudyRecord("s", ("maximize", "minimize", "minimize"), OBJECTIVES, ())
    report = build_report(rec, attrs, "now")
    assert report.accuracy.metric_label == "fidelity" and report.accuracy.description == FIDELITY_DESCRIPTION
    assert [r.meets_floor for r in report.accuracy.rows] == [True, True, False]  # int8: 0.965 / 0.97 < 99.5%
    assert report.chosen is None and "no feasible Pareto-optimal trial" in report.chosen_problem


def test_the_report_says_what_the_data_was_and_what_was_left_out() -> None:
    from dataclasses import replace

    from tuner.report.html import _accuracy as accuracy_section

    model = replace(_model("fidelity"), calibration="x: audio-like signals (random tones plus noise, 16 kHz)",
                    left_out={"fp16": "building its variant failed (RuntimeError: boom)"},
                    interface_notes=("input 'sr' fixed to 16000 (int64[]), not sent by clients",))
    rec = StudyRecord("s", ("maximize", "minimize", "minimize"), OBJECTIVES, ())
    acc = str(accuracy_section(build_report(rec, {"model": model.to_dict()}, "now")))
    assert "audio-like signals" in acc and "Precision fp16 left out: building its variant failed" in acc
    assert "input &#x27;sr&#x27; fixed to 16000" in acc or "input 'sr' fixed to 16000" in acc


def test_unknown_study_exits_2_naming_the_studies(storage: str, tmp_path: Path, capsys) -> None:
    assert run(argparse.Namespace(study="nope", storage=storage, out=tmp_path / "r", artifacts=None)) == 2
    err = capsys.readouterr().err
    assert "No study named 'nope'" in err and "promoted" in err
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_exits_2(storage: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "f").write_text("x")
    assert run(argparse.Namespace(study="promoted", storage=storage, out=tmp_path / "f", artifacts=None)) == 2
    assert "It is a file" in capsys.readouterr().err


def test_help_describes_the_command(capsys) -> None:
    parser = argparse.ArgumentParser(prog="tuner")
    add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["report", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--study" in out and "--out DIR" in out and "offline" in out


def test_study_record_is_the_input(storage: str) -> None:
    """The report reads `tuner show --json`'s record: the same front, the same finalist medians."""
    study = optuna.load_study(study_name=EVIL_NAME, storage=storage)
    rec = study_record(study)
    report = build_report(rec, study.user_attrs, "now")
    assert {p.number for p in report.front} == {r.number for r in rec.front}
    assert next(p for p in report.points if p.number == 1).metrics.throughput_rps == 3900.0


def test_study_without_trials_or_attrs_still_gets_a_page(tmp_path: Path) -> None:
    rec = StudyRecord("empty", ("maximize", "minimize", "minimize"), OBJECTIVES, ())
    files = write_report(build_report(rec, {}, "now"), tmp_path)
    page = files.html.read_text()
    assert "Nothing can be chosen yet" in page and "No feasible Pareto trial yet." in page
    assert "The study records no model accuracy." in page
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in files.pngs.values())


def test_an_uncalibrated_board_says_so_and_a_measured_row_has_no_band() -> None:
    from tuner.report.build import TrialPoint
    from tuner.report.html import TRIAL_HEADERS, trial_rows
    from tuner.report.plots import hover_text

    wide = ErrorBand(2.1, 4.3, False, 20, "boards predicted by fits that never saw them")
    est = TrialPoint(7, TrialConfig("fpga", 4, "int8", 1, 1, "vck5000"),
                     Metrics(5000, 2, 2, 2, 0.96, 0.3, True, wide), True, True, "fpga.vck5000")
    cpu = TrialPoint(8, TrialConfig("cpu", 8, "fp32", 1, 1), Metrics(2000, 1, 2, 3, 0.98, 0.1, False), True, True,
                     "cpu.vcpu", level="engine")
    rows, _ = trial_rows([est, cpu], None)
    figures = TRIAL_HEADERS.index("figures")
    assert str(rows[0][figures]).endswith("FPGA cost model, x2.10 typical, x4.30 worst (uncalibrated)")
    assert str(rows[1][figures]) == "measured" and cpu.error_band is None
    assert "expected error x2.10 typical, x4.30 worst (uncalibrated)" in hover_text(est)
    assert "expected error" not in hover_text(cpu)


def test_a_served_row_shows_its_level_and_its_engine_ceiling() -> None:
    from tuner.report.build import TrialPoint
    from tuner.report.html import TRIAL_HEADERS, trial_rows

    point = TrialPoint(3, TrialConfig("cpu", 8, "fp32", 1, 1), Metrics(2000, 1, 2, 3, 0.98, 0.1, False), True, True,
                       "cpu.vcpu", level="served", engine_throughput_rps=40000.0, serving_efficiency=0.05)
    engine = TrialPoint(4, TrialConfig("cpu", 8, "fp32", 1, 1), Metrics(40000, 1, 2, 3, 0.98, 0.1, False), True,
                        False, "cpu.vcpu", level="engine")
    rows, _ = trial_rows([point, engine], None)
    level, ceiling = TRIAL_HEADERS.index("level"), TRIAL_HEADERS.index("engine inf/s (served / engine)")
    assert (rows[0][level], rows[0][ceiling]) == ("served", "40,000 (0.050)")
    assert (rows[1][level], rows[1][ceiling]) == ("engine", "-")
