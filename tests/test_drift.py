"""tuner watch's pure parts: Ray's Prometheus text into live figures, and the drift verdicts."""

from __future__ import annotations

import pytest

from tuner.config import TrialConfig
from tuner.deploy.drift import HEADROOM, Promoted, cost_per_hour_usd, fitting, judge
from tuner.deploy.livemetrics import LiveFigures, figures, parse, quantile
from tuner.metrics import Metrics
from tuner.record import TrialRecord

APP = "tuner"


def exposition(instances: float, ok: float, *, failed_500: float = 0, refused_503: float = 0,
               buckets: dict[float, float] | None = None, ongoing: tuple[float, ...] = (0,)) -> str:
    """Ray's exposition of one application's replicas (two replicas' series, one other app's)."""
    lines = ["# HELP ray_tuner_infer_instances_total Instances run.",
             "# TYPE ray_tuner_infer_instances_total counter"]
    for replica, share in (("r1", 0.5), ("r2", 0.5)):
        lines.append(f'ray_tuner_infer_instances_total{{application="{APP}",deployment="ModelServer",'
                     f'model="digits",replica="{replica}"}} {instances * share}')
    lines.append('ray_tuner_infer_instances_total{application="other",deployment="X",model="m",replica="z"} 1e9')
    lines += ["# HELP ray_tuner_infer_requests_total Requests.", "# TYPE ray_tuner_infer_requests_total counter",
              f'ray_tuner_infer_requests_total{{application="{APP}",model="digits",replica="r1",status="200"}} {ok}',
              f'ray_tuner_infer_requests_total{{application="{APP}",model="digits",replica="r1",status="400"}} 7',
              f'ray_tuner_infer_requests_total{{application="{APP}",model="digits",replica="r1",status="500"}} {failed_500}',
              "# HELP ray_serve_num_http_requests_total HTTP.", "# TYPE ray_serve_num_http_requests_total counter",
              f'ray_serve_num_http_requests_total{{application="{APP}",method="POST",route="/",status_code="200"}} {ok}',
              f'ray_serve_num_http_requests_total{{application="{APP}",method="POST",route="/",status_code="503"}} '
              f'{refused_503}',
              "# HELP ray_serve_http_request_latency_ms Latency.",
              "# TYPE ray_serve_http_request_latency_ms histogram"]
    for le, count in (buckets or {}).items():
        le_text = "+Inf" if le == float("inf") else repr(le)
        lines.append(f'ray_serve_http_request_latency_ms_bucket{{application="{APP}",le="{le_text}",method="POST",'
                     f'route="/",status_code="200"}} {count}')
        lines.append(f'ray_serve_http_request_latency_ms_bucket{{application="{APP}",le="{le_text}",method="GET",'
                     f'route="/-/healthz",status_code="200"}} 1000')  # Serve's health checks: left out
    lines += ["# HELP ray_serve_replica_processing_queries Ongoing.",
              "# TYPE ray_serve_replica_processing_queries gauge"]
    for i, value in enumerate(ongoing):
        lines.append(f'ray_serve_replica_processing_queries{{application="{APP}",deployment="ModelServer",'
                     f'replica="r{i}"}} {value}')
    return "\n".join(lines) + "\n"


def test_two_scrapes_give_rates_errors_percentiles_and_in_flight_of_the_application_only() -> None:
    inf = float("inf")
    before = parse(exposition(1000, 100, buckets={1.0: 10, 2.0: 50, 5.0: 100, inf: 100}), APP, at_s=10.0)
    after = parse(exposition(5000, 500, failed_500=4, refused_503=6,
                             buckets={1.0: 10, 2.0: 250, 5.0: 490, inf: 500}, ongoing=(3, 5)), APP, at_s=12.0)
    live = figures(before, after)
    assert live.inferences_per_s == pytest.approx(2000.0)  # (5000 - 1000) / 2 s; the other app's 1e9 left out
    assert live.requests_per_s == pytest.approx(200.0)
    assert live.errors_per_s == pytest.approx(5.0)  # 4 x 500 and 6 x 503 in 2 s; the 400s are the client's
    assert live.error_statuses == ("500", "503")
    # 400 requests in the interval: none <= 1 ms, 200 in (1, 2], 190 in (2, 5], 10 above 5 ms.
    assert live.latency_p50_ms == pytest.approx(2.0)
    assert live.latency_p95_ms == pytest.approx(2 + 3 * (380 - 200) / 190)
    assert live.ongoing_requests == 8


def test_a_counter_that_went_down_was_reset_by_a_restarted_replica() -> None:
    before = parse(exposition(9000, 900), APP, at_s=0.0)
    after = parse(exposition(400, 40), APP, at_s=4.0)
    assert figures(before, after).inferences_per_s == pytest.approx(100.0)


def test_quantile_of_an_empty_histogram_is_none_and_the_inf_bucket_gives_the_largest_bound() -> None:
    assert quantile(0.95, []) is None
    assert quantile(0.95, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.95, [(1.0, 1.0), (10.0, 2.0), (float("inf"), 100.0)]) == 10.0


def rec(number: int, tput: float, p95: float, cost_per_m: float, replicas: int = 1) -> TrialRecord:
    metrics = Metrics(tput, p95 / 2, p95, p95 * 1.5, 0.97, cost_per_m, False)
    return TrialRecord(number, "COMPLETE", TrialConfig("cpu", 16, "fp32", replicas, 1), metrics, True, True,
                       level="served")


def live(inf_s: float, *, p95: float | None = 1.0, ongoing: float = 0, errors: float = 0,
         statuses: tuple[str, ...] = ()) -> LiveFigures:
    return LiveFigures(3.0, inf_s, inf_s, errors, statuses, p95 and p95 / 2, p95, ongoing)


SMALL = rec(0, 1000, 2.0, 0.10)  # $0.00036/h
BIG = rec(1, 3000, 3.0, 0.06, replicas=2)  # $0.00065/h
HUGE = rec(2, 9000, 9.0, 0.05, replicas=2)  # p95 9 ms: outside a 5 ms SLO


def promoted(r: TrialRecord, slots: int = 32) -> Promoted:
    assert r.metrics is not None
    return Promoted(r, r.metrics.throughput_rps, r.metrics.latency_p95_ms, slots, "served")


def test_full_request_slots_are_an_overload_and_name_the_cheapest_configuration_that_fits() -> None:
    v = judge(live(980, ongoing=31), promoted(SMALL), [SMALL, BIG, HUGE], slo_ms=5.0)
    assert v.kind == "overload" and v.drift
    assert v.fit is BIG  # HUGE is faster but breaks the SLO
    assert "31 of 32 request slots busy" in v.message and "#1" in v.message


def test_refused_requests_are_an_overload_and_count_in_the_demand() -> None:
    v = judge(live(900, ongoing=2, errors=50, statuses=("503",)), promoted(SMALL), [SMALL, BIG], slo_ms=None)
    assert v.kind == "overload"
    assert v.demand_rps == pytest.approx(1000 + 50)


def test_traffic_below_capacity_with_free_slots_is_ok() -> None:
    v = judge(live(600, ongoing=4), promoted(SMALL), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "ok" and not v.drift and v.fit is None


def test_p95_above_the_slo_is_a_drift() -> None:
    v = judge(live(500, p95=7.5, ongoing=4), promoted(SMALL), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "slo" and "7.50 ms" in v.message


def test_server_errors_are_a_drift_but_client_errors_are_not_counted() -> None:
    v = judge(live(500, ongoing=1, errors=2.0, statuses=("500",)), promoted(SMALL), [SMALL], slo_ms=5.0)
    assert v.kind == "errors" and "HTTP 500" in v.message


def test_low_traffic_on_a_big_deployment_names_a_cheaper_one() -> None:
    v = judge(live(300, ongoing=1), promoted(BIG), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "underused" and v.fit is SMALL
    assert cost_per_hour_usd(SMALL) < cost_per_hour_usd(BIG)
    # ... but not when the cheaper one would run past its headroom.
    assert judge(live(SMALL.metrics.throughput_rps * HEADROOM + 50, ongoing=1), promoted(BIG),  # type: ignore[union-attr]
                 [SMALL, BIG], slo_ms=5.0).kind == "ok"


def test_no_traffic_is_idle_not_underused() -> None:
    assert judge(live(0, p95=None), promoted(BIG), [SMALL, BIG], slo_ms=5.0).kind == "idle"


def test_when_nothing_serves_the_demand_the_fastest_within_the_slo_is_named() -> None:
    assert fitting([SMALL, BIG, HUGE], demand_rps=50_000, slo_ms=5.0) is BIG
    assert fitting([HUGE], demand_rps=10, slo_ms=5.0) is None


def test_an_overload_offers_no_switch_to_a_configuration_that_serves_less() -> None:
    """Overloaded on the fastest configuration: the next fastest is named, not offered, so
    `watch --apply` does not move the load onto something slower."""
    v = judge(live(3500, ongoing=60), promoted(BIG, slots=64), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "overload" and v.fit is None
    assert "no configuration of the study serves more (the fastest is #0" in v.message
    # The same load on SMALL: BIG serves more, so it is offered.
    v = judge(live(1500, ongoing=31), promoted(SMALL), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "overload" and v.fit is BIG


def test_every_slot_busy_at_a_low_rate_is_a_burst_not_an_overload() -> None:
    v = judge(live(100, ongoing=32), promoted(SMALL), [SMALL, BIG], slo_ms=5.0)
    assert v.kind == "ok", v.message


def test_agreement_with_fp32_below_the_floor_with_confidence_is_a_drift_naming_an_fp32_configuration() -> None:
    from tuner.deploy.drift import Fidelity

    int8 = TrialRecord(5, "COMPLETE", TrialConfig("cpu", 16, "int8", 1, 1), rec(5, 1500, 2.0, 0.05).metrics,
                       True, True, level="served")
    fp32 = rec(6, 1200, 2.5, 0.08)  # dearer per hour than int8: no underused verdict
    low = Fidelity(compared=1000, agreed=950)  # 0.95, upper 95% bound ~0.96
    v = judge(live(500, ongoing=2), promoted(int8), [int8, fp32], slo_ms=5.0, fidelity=low, accuracy_floor=0.99)
    assert v.kind == "accuracy" and v.fit is fp32 and "0.9500" in v.message
    # Few instances, or agreement that may still reach the floor: no verdict.
    few = Fidelity(compared=50, agreed=40)
    assert judge(live(500, ongoing=2), promoted(int8), [int8, fp32], 5.0, few, 0.99).kind == "ok"
    close = Fidelity(compared=200, agreed=197)  # 0.985, upper bound above 0.99
    assert close.upper_95() > 0.99
    assert judge(live(500, ongoing=2), promoted(int8), [int8, fp32], 5.0, close, 0.99).kind == "ok"


def test_the_watched_deployment_keeps_its_token_digest_and_shadow_for_a_switch() -> None:
    import optuna

    from tuner.deploy.watch import active_deployment

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    user_config = {"auth_token_sha256": "ab" * 32, "shadow_fraction": 0.05}
    serve_config = {"http_options": {"host": "0.0.0.0", "port": 8123},
                    "applications": [{"name": "tuner", "deployments": [
                        {"max_ongoing_requests": 32, "user_config": user_config}]}]}
    study.set_user_attr("promotions", [{"trial": 3, "serve_config": serve_config, "cluster": "http://c:8265",
                                        "active": True}])
    dep = active_deployment(study)
    assert (dep.trial, dep.host, dep.port, dep.max_ongoing_requests) == (3, "0.0.0.0", 8123, 32)
    assert dep.auth_token_sha256 == "ab" * 32 and dep.shadow_fraction == 0.05


def _watcher(token_sha256: str | None, *, token: str | None, apply: bool = True, verify_s: float = 10.0):
    """A Watcher whose deployment and options are set by hand (its token check needs nothing else)."""
    from serving.auth import BearerToken
    from tuner.deploy.watch import Deployment, Watcher, WatchOptions

    watcher = Watcher.__new__(Watcher)
    watcher.dep = Deployment(0, APP, "http://127.0.0.1:8265", 8, "127.0.0.1", 8000, token_sha256)
    watcher.options = WatchOptions(apply=apply, verify_s=verify_s,
                                   auth_token=None if token is None else BearerToken(token))
    return watcher


def test_watch_refuses_a_token_the_deployment_was_not_promoted_with() -> None:
    from serving.auth import token_sha256
    from tuner.errors import TunerError

    right = "s3cret-token-of-the-deployment"
    _watcher(token_sha256(right), token=right)._check_token()  # the right one passes
    with pytest.raises(TunerError, match="another token than the deployment was promoted with"):
        _watcher(token_sha256(right), token="another-token-entirely-x")._check_token()
    with pytest.raises(TunerError, match="the deployment requires none"):
        _watcher(None, token=right)._check_token()


def test_watch_needs_the_token_only_to_verify_an_applied_switch_on_an_authenticated_endpoint() -> None:
    from serving.auth import token_sha256
    from tuner.errors import TunerError

    digest = token_sha256("s3cret-token-of-the-deployment")
    with pytest.raises(TunerError, match="pass --auth-token-file"):
        _watcher(digest, token=None)._check_token()
    _watcher(digest, token=None, verify_s=0)._check_token()  # no verification: the live figures verify it
    _watcher(digest, token=None, apply=False)._check_token()  # watching alone reads Prometheus, not the endpoint
    _watcher(None, token=None)._check_token()  # an open endpoint needs no token


def _study_with_active_promotion(autoscaling: dict | None):
    import optuna

    study = optuna.create_study(directions=["maximize"])
    deployment = {"name": "ModelServer", "max_ongoing_requests": 8, "user_config": {}}
    entry = {"trial": 3, "cluster": "http://127.0.0.1:8265", "active": True,
             "serve_config": {"applications": [{"name": APP, "deployments": [deployment]}],
                              "http_options": {"host": "127.0.0.1", "port": 8123}}}
    if autoscaling is not None:
        entry["autoscaling"] = autoscaling
    study.set_user_attr("promotions", [entry])
    return study


def test_watch_reads_the_autoscaling_range_the_deployment_was_promoted_with() -> None:
    from tuner.deploy.autoscale import Traffic
    from tuner.deploy.watch import active_deployment

    fixed = active_deployment(_study_with_active_promotion(None))
    assert fixed.traffic is None and fixed.cluster_cpus is None and fixed.port == 8123
    scaled = active_deployment(_study_with_active_promotion(
        {"traffic": {"low_rps": 50, "high_rps": 400, "upscale_delay_s": 3, "downscale_delay_s": 60},
         "cluster_cpus": 2, "min_replicas": 1}))
    assert scaled.traffic == Traffic(50.0, 400.0, 3.0, 60.0) and scaled.cluster_cpus == 2


def test_an_applied_switch_carries_the_token_shadow_and_autoscaling_range_over(monkeypatch, tmp_path) -> None:
    """The switch's wiring: what promote is asked for (promote and deploy themselves run for real in
    tests/test_watch.py and tests/test_autoscale.py)."""
    import tuner.deploy.promote as promote_module
    import tuner.deploy.rollout as rollout_module
    from tuner.deploy.autoscale import Traffic
    from tuner.deploy.watch import Deployment, Watcher, WatchOptions

    asked: dict = {}

    def fake_promote(study, out, number, **kwargs):
        asked.update(kwargs, number=number)
        return type("P", (), {"autoscaling": None})()

    monkeypatch.setattr(promote_module, "promote", fake_promote)
    monkeypatch.setattr(rollout_module, "deploy_promotion", lambda *a, **k: None)
    watcher = Watcher.__new__(Watcher)
    watcher.study, watcher.log, watcher.cluster = None, lambda _: None, object()
    watcher.options = WatchOptions(out=tmp_path / "applied.yaml")
    traffic = Traffic(50.0, 400.0)
    watcher.dep = Deployment(3, APP, "http://127.0.0.1:8265", 8, "127.0.0.1", 8123, "ab" * 32, 0.1, traffic, 2)
    monkeypatch.setattr(Watcher, "_load", lambda self: None)
    fit = TrialRecord(7, "COMPLETE", TrialConfig("cpu", 16, "int8", 1, 1),
                      rec(7, 1500, 2.0, 0.05).metrics)
    watcher.switch(fit)
    assert asked["number"] == 7 and asked["traffic"] == traffic and asked["cluster_cpus"] == 2
    assert asked["auth_token_sha256"] == "ab" * 32 and asked["no_auth"] is False
    assert asked["shadow_fraction"] == 0.1 and asked["port"] == 8123
