"""Typed trial records read back from a real (SQLite) study, and their `tuner show --json` form."""

from __future__ import annotations

import json

import optuna

from tuner.config import TrialConfig
from tuner.metrics import OBJECTIVES, Constraints, ErrorBand, PerfResult
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.prices import load_prices
from tuner.record import CONFIG_KEYS, StudyRecord, TrialRecord
from tuner.study.outcome import make_outcome, record, record_not_runnable
from tuner.study.readback import study_record

MODEL = PreparedModel("m", "builtin", (InputSpec("x", (4,), "float32"),), "fidelity", "test",
                      {"fp32": Variant("fp32", "/m/fp32.onnx", "a" * 64, 1.0),
                       "fp16": Variant("fp16", "/m/fp16.onnx", "b" * 64, 0.5),
                       "int8": Variant("int8", "/m/int8.onnx", "c" * 64, 1.0)})
JSON_TRIAL_KEYS = {"number", "state", "pareto", "feasible", "config", "device", "metrics", "constraints",
                   "artifact", "failure", "reused_from", "remeasured", "level", "engine", "serving_efficiency", "gpu",
                   "interference", "disturbed"}
JSON_METRIC_KEYS = {"throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "accuracy",
                    "cost_usd_per_million", "estimated", "error_band"}
BAND = ErrorBand(1.15, 1.46, True, 12, "zcu104's own published figures left out of its fit")


def _study(tmp_path) -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}", directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(list(OBJECTIVES))
    prices = load_prices()
    for config, tput, p95 in [(TrialConfig("cpu", 8, "fp32", 1, 1), 1000.0, 2.0),
                              (TrialConfig("cpu", 8, "fp32", 2, 1), 500.0, 4.0),      # dominated
                              (TrialConfig("cpu", 8, "fp16", 1, 1), 3000.0, 1.0),     # infeasible accuracy
                              (TrialConfig("fpga", 8, "int8", 4, 1, "aws-f1"), 9000.0, 0.5)]:
        trial = study.ask()
        trial.set_user_attr("config", config.to_dict())
        fpga = config.platform == "fpga"
        outcome = make_outcome(config, PerfResult(tput, p95 / 2, p95, p95 * 2, fpga,
                                                  {"error_band": BAND.to_dict()} if fpga else {}),
                               MODEL, prices, Constraints())
        study.tell(trial, record(trial, outcome, f"k{trial.number}", list(OBJECTIVES)))
    trial = study.ask()
    trial.set_user_attr("config", TrialConfig("cpu", 256, "fp32", 2, 1).to_dict())
    study.tell(trial, record_not_runnable(trial, "out of memory", "oom", list(OBJECTIVES)))
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    return study


def test_records_are_typed_and_the_front_is_marked(tmp_path):
    rec = study_record(_study(tmp_path))
    assert isinstance(rec, StudyRecord) and all(isinstance(t, TrialRecord) for t in rec.trials)
    assert [t.number for t in rec.front] == [0, 3]  # #1 dominated, #2 infeasible (fp16 accuracy 0.5)
    assert rec.trials[3].config == TrialConfig("fpga", 8, "int8", 4, 1, "aws-f1") and rec.trials[3].estimated
    assert rec.trials[3].metrics.error_band == BAND  # read back typed
    assert all(t.metrics.error_band is None for t in rec.trials[:3])  # measurements carry no band
    oom, failed = rec.trials[4], rec.trials[5]
    assert oom.metrics is None and not oom.feasible and oom.failure == "out of memory"
    assert oom.constraints == {"runnable": 1.0}
    assert failed.state == "FAIL" and failed.config is None and failed.metrics is None


def test_json_form_is_the_show_contract(tmp_path):
    out = json.loads(json.dumps(study_record(_study(tmp_path)).to_json()))
    assert set(out) == {"study", "directions", "objectives", "trials"}
    assert out["directions"] == ["maximize", "minimize", "minimize"] and out["objectives"] == list(OBJECTIVES)
    for t in out["trials"]:
        assert set(t) == JSON_TRIAL_KEYS and tuple(t["config"]) == CONFIG_KEYS
        assert t["metrics"] is None or set(t["metrics"]) == JSON_METRIC_KEYS
    fpga = out["trials"][3]
    assert fpga["device"] == "aws-f1" and fpga["metrics"]["estimated"] is True and fpga["pareto"] is True
    assert fpga["metrics"]["error_band"] == {"typical_factor": 1.15, "worst_factor": 1.46, "calibrated": True,
                                             "rows": 12, "basis": BAND.basis}
    assert all(t["metrics"]["error_band"] is None for t in out["trials"][:3])  # measured: null
    assert out["trials"][5]["config"] == {k: None for k in CONFIG_KEYS}
    assert [t["level"] for t in out["trials"]] == ["engine", "engine", "engine", "estimate", None, None]
    assert all(t["engine"] is None and t["serving_efficiency"] is None for t in out["trials"])
