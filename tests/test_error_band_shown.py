"""Every place an FPGA estimate is shown gives its expected error band (issue 20): `tuner show`
and its JSON, the end-of-tune front, the per-trial progress line and the study's dashboard note.
A board without published figures of its own says "uncalibrated"; a measurement has no band.

Real SQLite studies with the attributes tuner writes (tuner.study.outcome.record); no Ray. The
`tuner estimate` and report displays are tested in test_estimate.py and test_report.py.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import optuna
import pytest

from tuner.cli import show
from tuner.cli.table import BAND_LEGEND, COLUMNS, format_table
from tuner.cli.tune import print_front
from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.metrics import OBJECTIVES, Constraints, ErrorBand, PerfResult, directions_for
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.prices import load_prices
from tuner.spec.load import load_space
from tuner.spec.measurement import LoadSpec
from tuner.study.dashboard_view import study_note
from tuner.study.loop import LoopContext, run_trials
from tuner.study.outcome import make_outcome, record
from tuner.study.readback import study_record
from tuner.study.storage import open_storage

from helpers import write_space

MODEL = PreparedModel("m", "builtin", (InputSpec("x", (4,), "float32"),), "fidelity", "test",
                      {"fp32": Variant("fp32", "/m/fp32.onnx", "a" * 64, 1.0),
                       "int8": Variant("int8", "/m/int8.onnx", "c" * 64, 1.0)})
BAND = ErrorBand(1.15, 1.46, True, 11, "11 published Model Zoo figures of zcu104, each left out of its fit")
WIDE = ErrorBand(1.21, 2.58, False, 97, "every board's published figures, each board predicted by a fit "
                                        "that never saw it")
PRICES = load_prices({"fpga.zcu104": {"usd_per_hour": 1.0, "source": "test price"}})
# (config, throughput_rps, p95 ms, band): all three on the feasible front.
TRIALS = [(TrialConfig("cpu", 8, "fp32", 1, 1), 1000.0, 2.0, None),
          (TrialConfig("fpga", 8, "int8", 2, 1, "zcu104"), 9000.0, 0.5, BAND),
          (TrialConfig("fpga", 8, "int8", 2, 1, "aws-f1"), 20000.0, 0.8, WIDE)]


def _perf(tput: float, p95: float, band: ErrorBand | None) -> PerfResult:
    return PerfResult(tput, p95 / 2, p95, p95 * 2, band is not None,
                      {"error_band": band.to_dict()} if band else {})


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'b.db'}"


@pytest.fixture
def study(url: str) -> optuna.Study:
    study = optuna.create_study(study_name="bands", storage=url, directions=directions_for(OBJECTIVES))
    study.set_metric_names(list(OBJECTIVES))
    for config, tput, p95, band in TRIALS:
        trial = study.ask()
        trial.set_user_attr("config", config.to_dict())
        outcome = make_outcome(config, _perf(tput, p95, band), MODEL, PRICES, Constraints())
        study.tell(trial, record(trial, outcome, f"k{trial.number}", list(OBJECTIVES)))
    return study


def _row(text: str, device: str) -> str:
    return next(line for line in text.splitlines() if f"fpga[{device}]" in line)


def test_show_gives_each_estimate_its_band_and_an_uncalibrated_board_says_so(study, url, capsys) -> None:
    assert show.run(argparse.Namespace(study="bands", storage=url, json=False)) == 0
    out = capsys.readouterr().out
    assert re.search(r"ESTIMATED x1\.15/x1\.46 +pareto$", _row(out, "zcu104"))
    assert re.search(r"ESTIMATED x1\.21/x2\.58 uncalibrated +pareto$", _row(out, "aws-f1"))
    cpu = next(line for line in out.splitlines() if " cpu " in line)
    assert "measured" in cpu and " x1." not in cpu  # a measurement carries no band
    assert BAND_LEGEND in out and "uncalibrated: the board has no published figures of its own" in out


def test_the_band_costs_the_table_only_the_source_column(study) -> None:
    lines = format_table(study_record(study).trials).splitlines()
    assert len({len(line) for line in lines}) == 1  # still aligned
    widths = dict(zip([name for name, _ in COLUMNS], (len(dashes) for dashes in lines[1].split())))
    assert widths["source"] == len("ESTIMATED x1.21/x2.58 uncalibrated")
    assert len(lines[0]) < 170


def test_show_json_has_the_band_of_an_estimate_and_null_for_a_measurement(study, url, capsys) -> None:
    assert show.run(argparse.Namespace(study="bands", storage=url, json=True)) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert [t["metrics"]["error_band"] for t in trials] == [None, BAND.to_dict(), WIDE.to_dict()]
    assert list(trials[1]["metrics"])[-2:] == ["estimated", "error_band"]


def test_the_end_of_tune_front_carries_the_band(study, capsys) -> None:
    print_front(study)
    out = capsys.readouterr().out
    assert "ESTIMATED x1.15/x1.46" in _row(out, "zcu104")
    assert "ESTIMATED x1.21/x2.58 uncalibrated" in _row(out, "aws-f1")
    assert BAND_LEGEND in out


def test_the_study_note_marks_each_estimated_row_with_its_band(study) -> None:
    note = study_note(study_record(study), [])
    front = note.split("Feasible front with the FPGA estimates")[1]
    assert "| ESTIMATED, x1.15 typical, x1.46 worst (calibrated) |" in _row(front, "zcu104")
    assert "| ESTIMATED, x1.21 typical, x2.58 worst (uncalibrated) |" in _row(front, "aws-f1")
    assert "uncalibrated = a board with no published figures of its own" in front
    cpu = next(line for line in front.splitlines() if "| cpu " in line)
    assert "typical" not in cpu


FPGA_SPACE = """\
measure: engine
platforms:
  fpga:
    device: {type: categorical, choices: [aws-f1]}
    precision: {type: categorical, choices: [int8]}
    batch_size: {type: int, low: 1, high: 1}
    replicas: {type: int, low: 1, high: 1}
"""


class BandedEstimates:
    """A runner that returns one FPGA estimate with an error band (isolates the loop's printing)."""

    def __init__(self, band: ErrorBand) -> None:
        self.band = band

    def run(self, config: TrialConfig) -> PerfResult:
        return _perf(5000.0, 1.0, self.band)

    def shutdown(self) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.mark.parametrize(("band", "shown"), [(BAND, "ESTIMATED x1.15/x1.46 (typical/worst)"),
                                             (WIDE, "ESTIMATED x1.21/x2.58 uncalibrated (typical/worst)")])
def test_the_progress_line_of_an_fpga_trial_carries_its_band(tmp_path: Path, band: ErrorBand, shown: str) -> None:
    space = load_space(str(write_space(tmp_path, FPGA_SPACE)))
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'l.db'}"),
                                directions=directions_for(space.objectives))
    lines: list[str] = []
    cluster = ClusterInfo(total_cpus=2, max_node_cpus=2, fpga_devices={"aws-f1": 2})
    ctx = LoopContext(study, space, cluster, BandedEstimates(band), MODEL,
                      load_prices(), space.constraints.to_constraints(), LoadSpec(), "test", log=lines.append)
    run_trials(ctx, target=1, parallel=1)
    progress = [line for line in lines if "fpga[aws-f1]" in line and "inf/s" in line]
    assert len(progress) == 1 and shown in progress[0], lines
