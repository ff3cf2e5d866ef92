"""Promotion you can trust, on real parts: tune, promote --deploy (a detached Ray Serve
deployment), verification under load, a bad promotion rolled back with a client running
throughout (zero failed requests), `tuner rollback`, `tuner undeploy`."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import optuna
import pytest
import requests

from serving.loadgen import drive_background
from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.models.spec import InputSpec
from tuner.search.suggest import params_for, suggest
from tuner.spec.space import SearchSpace

from helpers import free_port, start_tuner, stop, tuner, wait_http

pytestmark = pytest.mark.integration

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, int8]}
    batch_size: {type: int, low: 1, high: 16, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measurement: {warmup_s: 0.1, window_s: 0.5, min_windows: 2, max_windows: 3, target_requests: 200}
"""




def promotions(work: Path) -> list[dict]:
    return optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db").user_attrs.get("promotions", [])


def replica_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].startswith("ray::ServeReplica")}


def add_overclaimed_trial(work: Path, unlike: dict) -> int:
    """A trial whose recorded figures no deployment can meet (as if measured on a far faster
    machine): promoting it must fail verification. Its batch size differs from the serving
    config's user_config `unlike`, so promoting it and rolling back really switch (an identical
    config would be no switch at all); the running replicas change it in place."""
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
    space = SearchSpace.model_validate(study.user_attrs["search_space"])
    config = TrialConfig("cpu", 2 if unlike["batch_size"] != 2 else 4, "fp32", 1, 1)
    study.enqueue_trial(params_for(space, config))
    trial = study.ask()
    assert suggest(space, trial, ClusterInfo(total_cpus=os.cpu_count(), max_node_cpus=os.cpu_count())) == config
    metrics = {"throughput_rps": 5e7, "latency_p50_ms": 0.001, "latency_p95_ms": 0.001, "latency_p99_ms": 0.001,
               "accuracy": study.user_attrs["fp32_accuracy"], "cost_usd_per_million": 1e-9, "estimated": False}
    trial.set_user_attr("config", config.to_dict())
    for k, v in metrics.items():
        trial.set_user_attr(k, v)
    trial.set_user_attr("feasible", True)
    trial.set_user_attr("artifact", study.user_attrs["model"]["variants"]["fp32"]["path"])
    study.tell(trial, [metrics["throughput_rps"], metrics["latency_p95_ms"], metrics["cost_usd_per_million"]])
    return trial.number


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory):
    w = tmp_path_factory.mktemp("promote")
    (w / "space.yaml").write_text(SPACE)
    out = tuner(w, "tune", "--trials", "4", "--space", "space.yaml", "--finalists", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    yield w
    tuner(w, "undeploy", timeout=180)


def test_deploy_verifies_and_records_the_figures(work: Path) -> None:
    port = free_port()
    (work / "port").write_text(str(port))
    out = tuner(work, "promote", "--study", "digits-cnn", "--out", "serve.yaml", "--port", str(port),
                "--deploy", "--verify-s", "8")
    assert out.returncode in (0, 1), out.stdout + out.stderr
    assert "verification (offline load" in out.stdout and "served" in out.stdout and "tuned" in out.stdout
    history = promotions(work)
    assert len(history) == 1 and history[0]["active"]
    v = history[0]["verification"]
    assert v["served"]["throughput_rps"] > 0 and v["throughput_ratio"] > 0 and v["requests_failed"] == 0
    # The trial's own windows (0.5 s, at most 3) within the study's limit (max_measuring_s, 30 s by
    # default), not windows cut to fit 8 s: the served p95 rests on as many requests as the trial's.
    assert v["duration_s"] == 30.0 and v["windows"] <= 3 and v["measuring_s"] < 8, v
    assert history[0]["verdict"] in ("passed", "failed") and history[0]["user"]
    # A failed verification exits 1 even with nothing to roll back to (a deploy pipeline must see it).
    assert out.returncode == (0 if history[0]["verdict"] == "passed" else 1), out.stdout


def test_serving_workers_run_at_normal_priority(work: Path) -> None:
    """Ray's default worker niceness (15) let any client on the machine stall serving during a
    switch (1476 of 2166 requests failed in experiments/switch_under_load.py): tuner's serving
    cluster runs its proxy and replicas at nice 0."""
    import psutil

    serving = [p for p in psutil.process_iter(["cmdline", "nice"])
               if any(part.startswith(("ray::ServeReplica", "ray::ProxyActor")) for part in (p.info["cmdline"] or []))]
    assert serving, "no Serve replica or proxy process found"
    assert {p.info["nice"] for p in serving} == {0}, [(p.info["cmdline"], p.info["nice"]) for p in serving]


def test_bad_promotion_rolls_back_with_zero_failed_requests_under_a_client(work: Path) -> None:
    """Issue 6's criterion: a forced bad promotion (deploy beside the running version, verify,
    fail, roll back) while a client sends 40 req/s throughout. The timeline printed (when
    promote ran, when requests failed) tells a failure in the switch from one in the load."""
    port = int((work / "port").read_text())
    good = promotions(work)[-1]
    bad = add_overclaimed_trial(work, unlike=good["serve_config"]["applications"][0]["deployments"][0]["user_config"])
    replicas_before = replica_pids()
    inputs = [InputSpec("x", (1, 8, 8), "float32")]
    with drive_background(f"http://127.0.0.1:{port}", "digits-cnn", inputs, "server", 1, target_rps=40) as load:
        t0 = time.monotonic()
        time.sleep(2)
        t_promote = time.monotonic() - t0
        out = tuner(work, "promote", "--study", "digits-cnn", "--trial", str(bad), "--out", "bad.yaml",
                    "--port", str(port), "--deploy", "--verify-s", "4")
        t_done = time.monotonic() - t0
        time.sleep(2)
        result = load.stop()
    print(out.stdout)
    print(f"promote ran {t_promote:.1f}-{t_done:.1f} s; failures at {result.failed_at_s[:3]}...{result.failed_at_s[-3:]}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED" in out.stdout and f"rolled back to trial #{good['trial']}" in out.stdout
    assert "0 failed requests" in out.stdout  # the verification load itself was served
    print(f"bad promotion + rollback under a 40 req/s client: {result.summary()}")
    # Zero failures: held here idle (0 of 1,173) and beside one busy process (0 of 1,403).
    # Not when other work saturates both cores (342-412 of ~1,600 got 503 during the
    # rollback: the bad batch-2 version then serves too slowly while the good one starts);
    # README, "switch".
    assert result.requests_failed == 0, (result.summary(), result.failed_by_status, result.errors_sample)
    assert result.requests_ok > 200, result.summary()
    # The switches were in place (user_config: batch size, model file): the same replica processes.
    assert replica_pids() == replicas_before
    history = promotions(work)
    assert history[-2]["trial"] == bad and history[-2]["verdict"] == "failed" and history[-2]["rolled_back_to"] == good["trial"]
    assert history[-1]["trial"] == good["trial"] and history[-1]["active"]


def test_rollback_command_restores_the_previous_promotion(work: Path) -> None:
    port = int((work / "port").read_text())
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
    current = promotions(work)[-1]["trial"]
    other = next(t.number for t in study.trials if t.state.name == "COMPLETE" and t.number != current
                 and t.user_attrs.get("throughput_rps", 0) < 1e7 and "measurement" in t.user_attrs)
    inputs = [InputSpec("x", (1, 8, 8), "float32")]
    with drive_background(f"http://127.0.0.1:{port}", "digits-cnn", inputs, "server", 1, target_rps=40) as load:
        out = tuner(work, "promote", "--study", "digits-cnn", "--trial", str(other), "--out", "other.yaml",
                    "--port", str(port), "--deploy", "--verify-s", "0")
        back = tuner(work, "rollback", "--study", "digits-cnn")
        time.sleep(1)
        result = load.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"trial #{current} is serving again" in back.stdout
    print(f"promote + tuner rollback under a 40 req/s client: {result.summary()}")
    assert result.requests_failed == 0, (result.summary(), result.failed_by_status, result.errors_sample)
    assert promotions(work)[-1]["trial"] == current


@pytest.fixture(scope="module")
def dashboard(work: Path):
    """`tuner dashboard` on the study's storage: where a person decides."""
    port = free_port()
    proc = start_tuner(work, "dashboard", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/meta", proc)
        yield base
    finally:
        stop(proc)


def _awaiting(base: str, promote, timeout_s: float = 180) -> tuple[dict, dict]:
    """The request promote opened (a running trial of digits-cnn.approvals), read through the
    dashboard's API as its page reads it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if promote.poll() is not None:
            raise AssertionError(f"promote ended before asking:\n{promote.stdout.read()}")
        studies = requests.get(f"{base}/api/studies", timeout=10).json()["study_summaries"]
        found = next((s for s in studies if s["study_name"] == "digits-cnn.approvals"), None)
        if found:
            detail = requests.get(f"{base}/api/studies/{found['study_id']}", timeout=30).json()
            # ready once its note is written (the trial shows as Running a moment before that)
            ready = [t for t in detail["trials"] if t["state"] == "Running"
                     and t["note"]["body"].startswith("**AWAITING APPROVAL**")]
            if ready:
                return detail, ready[-1]
        time.sleep(0.5)
    raise AssertionError(f"no approval request after {timeout_s} s")


def _decide(base: str, work: Path, value: float, who: str, why: str) -> tuple[int, str, dict]:
    """Start promote --require-approval --deploy, submit the dashboard's form as its page does,
    and return promote's exit code, its output and the request as the dashboard shows it then."""
    port = (work / "port").read_text()
    promote = start_tuner(work, "promote", "--study", "digits-cnn", "--out", "approved.yaml", "--port", port,
                          "--deploy", "--verify-s", "0", "--require-approval", "--approval-timeout-s", "240")
    try:
        detail, request = _awaiting(base, promote)
        assert detail["form_widgets"]["output_type"] == "user_attr"  # the form the trial's pane draws
        assert [w["user_attr_key"] for w in detail["form_widgets"]["widgets"]] == ["decision", "approver", "reason"]
        assert request["note"]["body"].startswith("**AWAITING APPROVAL** promote search trial #")  # and its figures
        assert not (work / "approved.yaml").exists()  # nothing is written before a decision
        posted = requests.post(f"{base}/api/trials/{request['trial_id']}/user-attrs", timeout=10,
                               json={"user_attrs": {"decision": value, "approver": who, "reason": why}})
        assert posted.status_code == 204, posted.text
        code = promote.wait(timeout=240)
    finally:
        output = stop(promote)
    time.sleep(2.5)  # the dashboard keeps a study's trials for 2 s before reading them again
    after = requests.get(f"{base}/api/studies/{request['study_id']}", timeout=30).json()
    return code, output, next(t for t in after["trials"] if t["trial_id"] == request["trial_id"])


def test_a_rejection_in_the_dashboard_stops_promote_with_nothing_deployed(work: Path, dashboard: str) -> None:
    before = promotions(work)
    pids = replica_pids()
    code, output, request = _decide(dashboard, work, 0, "carol", "not before the freeze")
    assert code == 1, output
    assert "REJECTED by carol" in output and "nothing written or deployed" in output
    assert not (work / "approved.yaml").exists()
    assert promotions(work) == before and replica_pids() == pids  # the same replicas serve on
    assert request["state"] == "Complete" and request["values"] == [0.0]
    assert request["note"]["body"].startswith("**REJECTED** by carol")
    decisions = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db").user_attrs["approvals"]
    assert decisions[-1]["approved"] is False and decisions[-1]["by"] == "carol" and decisions[-1]["at"]


def test_an_approval_in_the_dashboard_releases_promote(work: Path, dashboard: str) -> None:
    before = len(promotions(work))
    code, output, request = _decide(dashboard, work, 1, "dave", "load test passed")
    assert code == 0, output
    assert "APPROVED by dave" in output and "deployed trial #" in output
    assert (work / "approved.yaml").exists()
    history = promotions(work)
    assert len(history) == before + 1 and history[-1]["active"]
    assert history[-1]["approval"]["by"] == "dave" and history[-1]["approval"]["approved"] is True
    assert request["state"] == "Complete" and request["values"] == [1.0]


def test_undeploy_stops_the_serving_cluster(work: Path) -> None:
    import psutil

    state_file = Path(os.environ["TUNER_CACHE_DIR"]) / "serve-cluster.json"
    if not state_file.exists():  # this test run alone: deploy something first
        deployed = tuner(work, "promote", "--study", "digits-cnn", "--out", "serve.yaml", "--port", str(free_port()),
                         "--deploy", "--verify-s", "0")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    state = json.loads(state_file.read_text())
    out = tuner(work, "undeploy", timeout=180)
    assert out.returncode == 0 and "stopped" in out.stdout
    time.sleep(2)
    left = []  # by command line, and by a file held open under the cluster's temp dir (Ray's renamed agents)
    for p in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            if any(state["temp_dir"] in c for c in (p.info["cmdline"] or [])) or \
                    any(f.path.startswith(state["temp_dir"] + "/") for f in p.open_files()):
                left.append((p.pid, p.info["name"]))
    assert left == []
