"""tuner.deploy.autoscale: Ray Serve autoscaling derived from a trial's measured per-replica
capacity (pure), the config it writes (Ray's own schema), and `tuner promote --traffic-rps`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config
from serving.serve_config_check import load_serve_config
from tuner.cli import main
from tuner.config import TrialConfig
from tuner.deploy.autoscale import (
    HEADROOM,
    Capacity,
    Traffic,
    capacity_of,
    parse_traffic,
    plan_autoscaling,
)
from tuner.errors import TunerError
from tuner.metrics import Metrics
from tuner.record import TrialRecord

from servers import one_trial_study


def _trial(throughput_rps: float = 400.0, replicas: int = 2, threads: int = 1, batch: int = 4,
           level: str = "served", p50_ms: float = 10.0, p95_ms: float = 20.0) -> TrialRecord:
    metrics = Metrics(throughput_rps, p50_ms, p95_ms, p95_ms * 1.2, 0.9, 0.01, False)
    return TrialRecord(7, "COMPLETE", TrialConfig("cpu", batch, "fp32", replicas, threads), metrics, True, True,
                       level=level)


def _capacity(per_replica_rps: float = 200.0, in_flight: float = 8.0, replicas: int = 2, cpus: int = 1) -> Capacity:
    return Capacity(7, per_replica_rps, in_flight, replicas, cpus, "served", "test")


# --- the derivation ------------------------------------------------------------------------


def test_offline_capacity_is_throughput_per_replica_and_concurrency_per_replica() -> None:
    c = capacity_of(_trial(400.0, replicas=2), {"mode": "offline", "concurrency": 16}, max_ongoing_requests=8,
                    cpus_per_replica=1)
    assert c.per_replica_rps == 200.0 and c.in_flight_per_replica == 8.0
    assert "16 request(s) in flight / 2 replica(s)" in c.basis and "served throughput" in c.basis


def test_server_mode_in_flight_comes_from_littles_law() -> None:
    # 300 inf/s of 1-instance requests at p50 10 ms over 3 replicas: 300 x 0.010 / 3 = 1 in flight each
    c = capacity_of(_trial(300.0, replicas=3, p50_ms=10.0), {"mode": "server", "instances_per_request": 1}, 8, 1)
    assert c.per_replica_rps == 100.0 and c.in_flight_per_replica == pytest.approx(1.0)
    assert "Little's law" in c.basis
    # 4 instances per request: a quarter of the requests, so a quarter in flight
    c4 = capacity_of(_trial(300.0, replicas=3, p50_ms=10.0), {"mode": "server", "instances_per_request": 4}, 8, 1)
    assert c4.in_flight_per_replica == pytest.approx(0.25)


def test_engine_level_capacity_says_it_is_an_upper_bound_and_uses_the_served_default_concurrency() -> None:
    c = capacity_of(_trial(level="engine", replicas=2, batch=4), {}, max_ongoing_requests=8, cpus_per_replica=1)
    assert "ENGINE-level" in c.basis and "upper bound" in c.basis
    assert c.in_flight_per_replica == 8.0  # replicas x max_ongoing_requests in flight, / replicas


def test_in_flight_counts_at_most_max_ongoing_requests_so_upscaling_can_trigger() -> None:
    c = capacity_of(_trial(replicas=1), {"mode": "offline", "concurrency": 64}, max_ongoing_requests=8, cpus_per_replica=1)
    assert c.in_flight_per_replica == 8.0 and "counted up to max_ongoing_requests 8" in c.basis
    plan = plan_autoscaling(c, Traffic(10, 100), cluster_cpus=4)
    assert plan.target_ongoing_requests < 8  # a saturated replica reports 8: above the target


def test_min_max_initial_and_target_follow_the_rule() -> None:
    # 200 inf/s per replica, planned at 160 (80%); LOW 100 -> 1, HIGH 700 -> ceil(4.375) = 5
    plan = plan_autoscaling(_capacity(200.0, 8.0, replicas=2), Traffic(100, 700), cluster_cpus=8)
    assert plan.planned_rps_per_replica == pytest.approx(200.0 / HEADROOM) == pytest.approx(160.0)
    assert (plan.min_replicas, plan.max_replicas, plan.initial_replicas) == (1, 5, 2)
    assert plan.target_ongoing_requests == pytest.approx(8.0 / HEADROOM) == pytest.approx(6.4)
    assert not plan.capped and plan.warning() is None
    cfg = plan.serve_config()
    assert cfg["min_replicas"] == 1 and cfg["max_replicas"] == 5 and cfg["initial_replicas"] == 2
    assert cfg["upscale_delay_s"] == 3.0 and cfg["downscale_delay_s"] == 60.0
    assert cfg["look_back_period_s"] > cfg["metrics_interval_s"]  # Ray warns otherwise
    text = plan.describe()
    assert "min_replicas 1 = ceil(100 / 160.0)" in text and "target_ongoing_requests 6.4" in text


def test_a_rate_exactly_at_the_planned_capacity_needs_no_extra_replica() -> None:
    plan = plan_autoscaling(_capacity(200.0, 8.0, replicas=1), Traffic(160, 320), cluster_cpus=8)
    assert (plan.min_replicas, plan.max_replicas) == (1, 2)


def test_initial_is_the_trials_replicas_within_the_bounds() -> None:
    # LOW needs 3 > the trial's 2: start on 3
    assert plan_autoscaling(_capacity(replicas=2), Traffic(400, 700), 8).initial_replicas == 3
    # HIGH needs 2 < the trial's 4: max_replicas leaves room to start on the trial's 4
    plan = plan_autoscaling(_capacity(replicas=4), Traffic(10, 300), 8)
    assert (plan.min_replicas, plan.max_replicas, plan.initial_replicas) == (1, 4, 4) and not plan.capped
    # the trial's 4 replicas do not fit 2 CPUs: start on what fits
    plan = plan_autoscaling(_capacity(replicas=4), Traffic(10, 300), 2)
    assert (plan.max_replicas, plan.initial_replicas) == (2, 2)


def test_max_replicas_is_capped_by_the_cluster_cpus_with_a_warning_saying_what_the_cap_serves() -> None:
    # 2 CPUs per replica on 4 CPUs: 2 replicas, 2 x 160 = 320 inf/s planned; HIGH 700 needs 5
    plan = plan_autoscaling(_capacity(200.0, 8.0, replicas=1, cpus=2), Traffic(100, 700), cluster_cpus=4)
    assert plan.capped and plan.max_replicas == 2 and plan.needed_max_replicas == 5
    warning = plan.warning()
    assert warning is not None and "HIGH 700 inf/s needs 5 replicas" in warning and "serves 320.0 inf/s" in warning
    assert "400.0 at measured capacity" in warning and warning in plan.describe()


def test_low_that_the_cluster_cannot_serve_is_a_clear_error() -> None:
    with pytest.raises(TunerError, match=r"Got '500:700' for --traffic-rps\. LOW 500 inf/s needs 4 replicas") as e:
        plan_autoscaling(_capacity(200.0, 8.0, replicas=1, cpus=2), Traffic(500, 700), cluster_cpus=4)
    assert "serve 320.0 inf/s" in str(e.value) and "--cluster-cpus" in str(e.value)


@pytest.mark.parametrize("text", ["", "100", "a:b", "1:2:3", "0:10", "-5:10", "10:5", "nan:5", "5:inf", "10 20"])
def test_bad_traffic_rps_names_the_flag_echoes_the_value_and_gives_the_fix(text: str) -> None:
    with pytest.raises(TunerError) as e:
        parse_traffic(text)
    message = str(e.value)
    assert message.startswith(f"Got {text!r} for --traffic-rps.") and "LOW:HIGH" in message
    assert "Pass e.g. --traffic-rps 50:400." in message or "Swap them: --traffic-rps 5:10." in message


def test_traffic_rps_parses_and_bad_delays_or_cpus_are_refused() -> None:
    assert parse_traffic("50:400") == Traffic(50.0, 400.0, 3.0, 60.0)
    assert parse_traffic("2.5:2.5", 1, 5) == Traffic(2.5, 2.5, 1.0, 5.0)
    assert parse_traffic(None) is None
    with pytest.raises(TunerError, match=r"Got -1 for --upscale-delay-s\. It must be a number of seconds >= 0"):
        parse_traffic("1:2", upscale_delay_s=-1)
    with pytest.raises(TunerError, match=r"Got inf for --downscale-delay-s"):
        parse_traffic("1:2", downscale_delay_s=math.inf)
    with pytest.raises(TunerError, match=r"Got 0 for --cluster-cpus\. It must be an integer >= 1"):
        parse_traffic("1:2", cluster_cpus=0)
    with pytest.raises(TunerError, match=r"Got 5.0 for --downscale-delay-s\. .*only --traffic-rps asks for"):
        parse_traffic(None, downscale_delay_s=5.0)


# --- the written config, checked by Ray ------------------------------------------------------


def _serve_config(tmp_path: Path, autoscaling: dict[str, Any] | None) -> dict[str, Any]:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read by the config checks")
    return make_serve_config(TrialConfig("cpu", 4, "fp32", 2, 1), ServedModel("m", str(model)),
                             ServingOptions(autoscaling_config=autoscaling))


def test_the_autoscaling_config_replaces_num_replicas_and_passes_rays_schema(tmp_path: Path) -> None:
    plan = plan_autoscaling(_capacity(200.0, 8.0, replicas=2), Traffic(100, 700), cluster_cpus=8)
    config = _serve_config(tmp_path, plan.serve_config())
    raw = config["applications"][0]["deployments"][0]
    assert "num_replicas" not in raw  # Ray refuses an int num_replicas beside an autoscaling_config
    (deployment,) = ServeDeploySchema.model_validate(config).applications[0].deployments
    ray_config = AutoscalingConfig.model_validate(deployment.autoscaling_config)
    assert (ray_config.min_replicas, ray_config.initial_replicas, ray_config.max_replicas) == (1, 2, 5)
    assert ray_config.target_ongoing_requests == pytest.approx(6.4)
    assert (ray_config.upscale_delay_s, ray_config.downscale_delay_s) == (3.0, 60.0)
    assert ray_config.metrics_interval_s == 1.0 and ray_config.look_back_period_s == 5.0
    # without --traffic-rps: the trial's fixed replicas, as before
    assert _serve_config(tmp_path, None)["applications"][0]["deployments"][0]["num_replicas"] == 2


def test_rays_schema_check_is_live_for_autoscaling(tmp_path: Path) -> None:
    """The generated config goes through Ray's own rules: one Ray refuses (min > initial) stops it.
    ServeDeploySchema alone takes any dict as autoscaling_config (it would fail only at deploy
    time, in the controller), so make_serve_config checks it with Ray's AutoscalingConfig too."""
    bad = {"min_replicas": 3, "initial_replicas": 2, "max_replicas": 4}
    config = _serve_config(tmp_path, None)
    config["applications"][0]["deployments"][0] |= {"num_replicas": None, "autoscaling_config": bad}
    ServeDeploySchema.model_validate(config)  # the gap: Ray's deploy schema lets it through
    with pytest.raises(TunerError, match=r"Ray's AutoscalingConfig refuses it:\n.*min_replicas \(3\) must be less "
                                         r"than or equal to initial_replicas \(2\)"):
        _serve_config(tmp_path, bad)


# --- tuner promote --traffic-rps on a study (no Ray started) --------------------------------

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32]}
    batch_size: {type: int, low: 1, high: 8, pow2: true}
    replicas: {type: int, low: 1, high: 2}
    threads_per_replica: {type: int, low: 1, high: 1}
"""


@pytest.fixture
def study(tmp_path: Path) -> str:
    """A study with one served trial: cpu fp32 b4, 2 replicas, 400 inf/s at 16 in flight."""
    measured_at = {"mode": "offline", "concurrency": 16, "instances_per_request": 1}
    return one_trial_study(tmp_path, "m", SPACE, TrialConfig("cpu", 4, "fp32", 2, 1), {"measurement": measured_at})


def test_promote_writes_the_derived_autoscaling_config_and_says_how(study: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "serve.yaml"
    assert main(["promote", "--study", "m", "--storage", study, "--trial", "0", "--out", str(out),
                 "--traffic-rps", "100:700", "--cluster-cpus", "8", "--downscale-delay-s", "30"]) == 0
    printed = capsys.readouterr().out
    assert "autoscaling (--traffic-rps 100:700): per replica 200.0 inf/s" in printed
    assert "16 request(s) in flight / 2 replica(s)" in printed
    text = out.read_text()
    assert "# autoscaling (--traffic-rps 100:700)" in text and "#   target_ongoing_requests 6.4" in text
    deployment = load_serve_config(out)["applications"][0]["deployments"][0]
    assert "num_replicas" not in deployment
    assert deployment["autoscaling_config"] == {
        "min_replicas": 1, "initial_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 6.4,
        "metrics_interval_s": 1.0, "look_back_period_s": 5.0, "upscale_delay_s": 3.0, "downscale_delay_s": 30.0}


def test_promote_caps_max_replicas_at_the_cluster_and_warns(study: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "serve.yaml"
    assert main(["promote", "--study", "m", "--storage", study, "--trial", "0", "--out", str(out),
                 "--traffic-rps", "100:700", "--cluster-cpus", "3"]) == 0
    assert "WARNING: HIGH 700 inf/s needs 5 replicas, but 3 CPU(s) hold 3 replica(s) of 1 CPU(s)" in capsys.readouterr().out
    assert load_serve_config(out)["applications"][0]["deployments"][0]["autoscaling_config"]["max_replicas"] == 3


@pytest.mark.parametrize(("args", "fragment"), [
    (["--traffic-rps", "700:100"], "Got '700:100' for --traffic-rps"),
    (["--traffic-rps", "0:100"], "Got '0:100' for --traffic-rps"),
    (["--traffic-rps", "lots"], "Got 'lots' for --traffic-rps"),
    (["--traffic-rps", "1000:2000", "--cluster-cpus", "2"], "LOW 1000 inf/s needs 7 replicas"),
    (["--upscale-delay-s", "1"], "Got 1.0 for --upscale-delay-s"),
])
def test_promote_with_bad_autoscaling_input_exits_2_and_writes_nothing(
        study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    out = tmp_path / "serve.yaml"
    assert main(["promote", "--study", "m", "--storage", study, "--trial", "0", "--out", str(out), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()
