"""Faults on real parts; each test states what was lost (it must be nothing).

A killed driver, Ctrl-C / SIGTERM, a killed Ray worker, a removed worker node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings

pytestmark = pytest.mark.integration

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, fp16, int8]}
    batch_size: {type: int, low: 1, high: 64, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measure: engine  # the study loop is under test here, not the serving stack
measurement: {warmup_s: 0.1, window_s: 1.0, min_windows: 2, max_windows: 2, target_requests: 100}
"""


def start(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuner", *args], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def tune_args(trials: int) -> list[str]:
    return ["tune", "--trials", str(trials), "--space", "space.yaml", "--finalists", "0", "--remeasure"]


def trials_in(work: Path) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db").get_trials()
    except Exception:
        return []


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def session_processes(driver_pid: int) -> list[psutil.Process]:
    """Ray processes of the cluster a driver started (they name its session directory)."""
    marker = f"_{driver_pid}"
    out = []
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "session_" in cmd and marker in cmd and p.pid != driver_pid:
            out.append(p)
    return out


def _tail(output: str | bytes | None, chars: int = 3000) -> str:
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else (output or "")
    return text[-chars:]


def _ray_processes() -> list[str]:
    """Ray's processes on this machine, by name and CPU seconds (a diagnosis for a hang)."""
    out = []
    for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ray" in (p.info["name"] or "") or "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
            cpu = p.info["cpu_times"]
            out.append(f"{p.pid} {cmd[:80]} cpu={cpu.user + cpu.system if cpu else 0:.0f}s")
    return out


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path


def test_killed_driver_loses_nothing_and_the_rerun_finishes(work: Path) -> None:
    proc = start(work, *tune_args(6))
    wait_for(lambda: sum(t.state.name == "COMPLETE" for t in trials_in(work)) >= 2, 300, "2 complete trials")
    wait_for(lambda: any(t.state.name == "RUNNING" for t in trials_in(work)), 60, "a running trial")
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, as an OOM killer or a lost machine would
    proc.wait(30)
    complete_before = {t.number for t in trials_in(work) if t.state.name == "COMPLETE"}
    wait_for(lambda: not session_processes(proc.pid), 60, "the dead driver's Ray processes to exit")
    try:
        rerun = subprocess.run([sys.executable, "-m", "tuner", *tune_args(6)], cwd=work, capture_output=True,
                               text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:  # seen once in CI on a slow host: say where it stood
        raise AssertionError(f"the rerun did not finish in 600 s; trials: {[t.state.name for t in trials_in(work)]}; "
                             f"ray processes: {_ray_processes()}; stdout tail: {_tail(exc.stdout)}; "
                             f"stderr tail: {_tail(exc.stderr)}") from None
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = trials_in(work)
    complete = {t.number for t in trials if t.state.name == "COMPLETE"}
    assert complete_before <= complete          # nothing measured was lost
    assert len(complete) == 6                   # exactly the target
    assert [t.state.name for t in trials if t.state.name == "RUNNING"] == []  # the orphan was failed
    assert any(t.state.name == "FAIL" for t in trials)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_in_flight_trials_and_says_how_to_resume(work: Path, sig: int) -> None:
    proc = start(work, *tune_args(20))
    wait_for(lambda: sum(t.state.name == "COMPLETE" for t in trials_in(work)) >= 1, 300, "a complete trial")
    wait_for(lambda: any(t.state.name == "RUNNING" for t in trials_in(work)), 60, "a running trial")
    os.kill(proc.pid, sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Rerun the same command" in err
    trials = trials_in(work)
    assert not [t for t in trials if t.state.name == "RUNNING"]    # storage is consistent
    cancelled = [t for t in trials if t.state.name == "FAIL"]
    assert cancelled and all("cancelled" in t.user_attrs.get("failure", "") for t in cancelled)
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 1   # measured trials kept
    wait_for(lambda: not session_processes(proc.pid), 60, "the driver's Ray processes to exit")


def test_killed_worker_fails_one_trial_and_the_study_goes_on(work: Path) -> None:
    proc = start(work, *tune_args(5))
    wait_for(lambda: any(p for p in psutil.process_iter(["cmdline"])
                         if any("ReplicaHost" in c for c in (p.info["cmdline"] or []))), 300, "a replica process")
    wait_for(lambda: sum(t.state.name == "COMPLETE" for t in trials_in(work)) >= 1, 300, "a complete trial")
    victims = [p for p in psutil.process_iter(["cmdline"]) if any("ReplicaHost" in c for c in (p.info["cmdline"] or []))]
    for p in victims:
        p.kill()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    trials = trials_in(work)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 5
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) >= 1 and all("worker died" in t.user_attrs["failure"] for t in failed)


def test_removed_worker_node_fails_its_trial_and_the_others_run() -> None:
    """Head without CPUs and two 1-CPU workers: the node running a trial is removed; that trial
    fails, and the next one runs on the node that is left."""
    from ray.cluster_utils import Cluster

    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [nodes.add_node(num_cpus=1), nodes.add_node(num_cpus=1)]
    cluster = None
    try:
        cluster = RayCluster(nodes.address)
        long = MeasurementSettings(warmup_s=0.1, window_s=4, min_windows=3, max_windows=3, trial_timeout_s=120)
        runner = RayRunner(model, long, LoadSpec(), {}, cluster)
        results: list = []

        def run() -> None:
            try:
                results.append(runner.run(TrialConfig("cpu", 8, "fp32", 1, 1)))
            except TrialFailed as exc:
                results.append(exc)

        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: cluster.allocator.busy_nodes(), 30, "the trial to take a core")
        busy = cluster.allocator.busy_nodes().pop()
        time.sleep(3)  # under load
        nodes.remove_node(next(w for w in workers if w.node_id == busy), allow_graceful=False)
        t.join(180)
        assert len(results) == 1 and isinstance(results[0], TrialFailed), results
        assert not results[0].infeasible
        short = MeasurementSettings(warmup_s=0.1, window_s=0.5, min_windows=2, max_windows=2, trial_timeout_s=60)
        after = RayRunner(model, short, LoadSpec(), {}, cluster).run(TrialConfig("cpu", 8, "fp32", 1, 1))
        assert after.details["placement"][0]["node_id"] != busy  # the study goes on, elsewhere
    finally:
        if cluster is not None:
            cluster.shutdown()
        nodes.shutdown()
