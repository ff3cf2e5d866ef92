"""experiments/gpu_check.py as the GPU machine runs it: it exits 2 with a message where there is no
CUDA, and its CPU dry run works in a fresh process where Ray, pydantic and Optuna cannot be imported
(the GPU image has none of them). The contract checks it runs are tuner.testing.contract, tested in
tests/test_evaluator_contract.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tuner.evaluators.gpu_select import RuntimeFacts

ROOT = Path(__file__).resolve().parents[1]


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "experiments" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_script_exits_2_with_a_message_without_cuda(monkeypatch, capsys):
    gpu_check = _load_gpu_check()
    import tuner.evaluators.gpu_select as select

    monkeypatch.setattr(select, "detect_runtime", lambda: RuntimeFacts("1.32.0", ("CPUExecutionProvider",), "2.13.0"))
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "no CUDA here" in err and "onnxruntime-gpu" in err


# Runs the script as the GPU machine would: a fresh process where Ray, pydantic and optuna
# cannot be imported (the GPU image has none of them).
_BARE_PYTHON = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "pydantic", "optuna"}:
            raise ModuleNotFoundError("blocked on purpose: " + name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.integration
def test_script_dry_run_without_ray_or_pydantic_writes_its_table_csv_and_json(tmp_path):
    import subprocess

    args = ["--dry-run-cpu", "--quick", "--models", "digits-cnn", "--precisions", "fp32", "fp16",
            "--backends", "torch", "--device-key", "h100", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", _BARE_PYTHON, str(ROOT / "experiments" / "gpu_check.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "throughput_rps" in done.stdout and "wrote" in done.stdout  # the table was printed
    with open(tmp_path / "gpu_check.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["precision"], int(r["batch_size"])) for r in rows] == [
        ("fp16", 1), ("fp16", 16), ("fp16", 256), ("fp32", 1), ("fp32", 16), ("fp32", 256)]
    assert all(r["status"] == "ok" and float(r["throughput_rps"]) > 0 for r in rows)
    assert all(0 < float(r["fraction_of_peak"]) < 1 for r in rows)
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert len(summary["contract"]["torch"]) == 6
    assert summary["catalog_device"] == "h100" and summary["peaks"]["fp16"] == 989.4
    assert summary["weights"]["digits-cnn"].startswith("trained")
    assert summary["gflops_per_instance"]["digits-cnn"] > 0
    assert set(summary["calibration"]) <= {"fp32", "fp16"}
