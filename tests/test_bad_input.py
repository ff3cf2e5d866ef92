"""Bad input through the real CLI: a clear message naming the problem and the fix, exit code 2,
and nothing written or lost."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import optuna
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import tuner


def dynamic_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["tokens", "W"], ["y"])], "g", [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


CASES = {
    "malformed storage URL": (["show", "--storage", "tuner.db"], "database URL"),
    "unreachable database": (["show", "--storage", "postgresql://u:p@127.0.0.1:1/none"], "running and reachable"),
    "unknown study": (["show", "--study", "nope", "--storage", "sqlite:///other.db"], "No study named 'nope'"),
    "storage file missing": (["show", "--storage", "sqlite:///missing.db"], "does not exist"),
    "model not a file": (["tune", "--model", "missing.onnx", "--trials", "1"], "not a file"),
    "model not ONNX": (["tune", "--model", "notes.onnx", "--trials", "1"], "not a readable ONNX model"),
    "pickled checkpoint": (["tune", "--model", "model.pt", "--trials", "1"], "never unpickles"),
    "dynamic dimension without --input-shape": (["tune", "--model", "dyn.onnx", "--trials", "1"], "--input-shape tokens:"),
    "python tag in a search space": (["tune", "--space", "evil.yaml", "--trials", "1"], "safe loading"),
    "unknown search space key": (["tune", "--space", "typo.yaml", "--trials", "1"], "unknown key"),
    "Ray address unreachable": (["tune", "--ray-address", "127.0.0.1:1", "--trials", "1"], "nothing answers there"),
    "serve config pointing at a missing model": (["serve", "serve.yaml"], "does not exist"),
    "bad --input-shape": (["tune", "--model", "dyn.onnx", "--input-shape", "tokens=3", "--trials", "1"], "NAME:D1,D2"),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("bad")
    (w / "notes.onnx").write_text("not a model\n" * 20)
    optuna.create_study(study_name="other", storage=f"sqlite:///{w}/other.db")
    (w / "model.pt").write_bytes(pickle.dumps({"state_dict": [1, 2, 3]}, protocol=4))
    dynamic_model(w / "dyn.onnx")
    (w / "evil.yaml").write_text("platforms: !!python/object/apply:os.system ['touch pwned']\n")
    (w / "typo.yaml").write_text("platform: {}\n")
    (w / "serve.yaml").write_text(
        "proxy_location: HeadOnly\nhttp_options: {host: 127.0.0.1, port: 8000}\napplications:\n"
        "- name: tuner\n  route_prefix: /\n  import_path: serving.app:build_app\n"
        "  args: {model_name: m}\n  deployments:\n  - name: ModelServer\n    user_config: {model_path: /nonexistent/model.onnx, "
        "precision: fp32, batch_size: 1, threads_per_replica: 1}\n")
    return w


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_a_clear_message(work: Path, case: str) -> None:
    args, expected = CASES[case]
    before = sorted(p.name for p in work.iterdir())
    out = tuner(work, *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in work.iterdir()) == before   # nothing written (no db, no pwned file)


def test_promote_with_no_feasible_trial(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize", "minimize"])
    trial = study.ask()
    trial.suggest_categorical("platform", ["cpu"])
    trial.set_user_attr("config", {"platform": "cpu", "batch_size": 1, "precision": "int8", "replicas": 1,
                                   "threads_per_replica": 1})
    for k, v in {"throughput_rps": 10.0, "latency_p50_ms": 1.0, "latency_p95_ms": 2.0, "latency_p99_ms": 3.0,
                 "accuracy": 0.5, "cost_usd_per_million": 1.0, "estimated": False, "feasible": False}.items():
        trial.set_user_attr(k, v)
    trial.set_constraint("accuracy", 0.4)
    study.tell(trial, [10.0, 2.0, 1.0])
    out = tuner(tmp_path, "promote", "--storage", storage, "--study", "s", "--out", "x.yaml")
    assert out.returncode == 2 and "no feasible Pareto-optimal trial" in out.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_dashboard_on_a_busy_port_exits_2_without_claiming_success(work: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = tuner(work, "dashboard", "--port", str(port), "--storage", "sqlite:///other.db", timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"--port {port}" in out.stderr or f"Got {port} for --port" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "optuna-dashboard for" not in out.stdout
