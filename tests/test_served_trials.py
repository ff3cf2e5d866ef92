"""The served measurement level on a real local Ray cluster: each configuration deployed as the
Ray Serve application promote writes, driven over real HTTP by tuner's V2 client."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

import pytest

from serving.trial_serve import replica_pids
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import PreparedModel, prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings

pytestmark = pytest.mark.integration

QUICK = MeasurementSettings(warmup_s=0.2, window_s=0.5, min_windows=2, max_windows=3, target_requests=50)


@pytest.fixture(scope="module")
def model() -> PreparedModel:
    return prepare_model("digits-cnn", ModelOptions(), {"fp32", "fp16"}, log=lambda s: None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    c = RayCluster()
    try:
        yield c
    finally:
        c.shutdown()


def served(model: PreparedModel, cluster: RayCluster, load: LoadSpec | None = None, **settings) -> RayRunner:
    return RayRunner(model, QUICK, load or LoadSpec(), {}, cluster, level="served", served=ServedSettings(**settings))


def metadata(runner: RayRunner) -> dict:
    url = f"{runner.cluster.trial_serve().base_url}/v2/models/{runner.model.name}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["parameters"]


def test_offline_trial_is_measured_end_to_end_beside_its_engine_ceiling(model, cluster) -> None:
    runner = served(model, cluster)
    try:
        result = runner.run(TrialConfig("cpu", 4, "fp32", 2, 1))
        d = result.details
        assert d["level"] == "served" and d["requests_failed"] == 0
        assert result.throughput_rps > 0 and 0 < result.latency_p50_ms <= result.latency_p95_ms <= result.latency_p99_ms
        assert d["concurrency"] == 2 * d["serve_deployment"]["max_ongoing_requests"]  # 2 replicas x its limit
        assert len(d["stack"]["replica_pids"]) == 2
        assert d["binary"] is True and d["instances_per_request"] == 1
        engine = d["engine"]["throughput_rps"]
        assert d["serving_efficiency"] == pytest.approx(result.throughput_rps / engine, abs=1e-4)  # 4 decimals
        assert set(d["stack_cores_used"]) == {"proxy", "replicas", "client"}
        assert d["stack_cores_used"]["replicas"] > 0 and d["stack_cores_used"]["client"] > 0
        assert d["stack"]["endpoint"].startswith("http://127.0.0.1:")
        assert d["client_placement"]["where"] == "same node" and d["client_placement"]["requested"] == "same"
        assert "label_selector" not in d["serve_deployment"]["ray_actor_options"]  # one node: nothing to pin
        assert d["serve_path"].startswith("fast path (HAProxy"), d["serve_path"]  # as promote's clusters run
        assert metadata(runner)["batch_size"] == 4

        # One replica fewer, another batch size, precision and thread count: Serve stops one replica
        # and reconfigures the one it keeps in place.
        before = replica_pids()
        second = runner.run(TrialConfig("cpu", 8, "fp16", 1, 2))
        kept = second.details["stack"]["replica_pids"]
        assert second.details["replicas_restarted"] is False and len(kept) == 1 and set(kept) < before
        assert second.details["requests_failed"] == 0
        params = metadata(runner)
        assert (params["batch_size"], params["precision"], params["threads_per_replica"]) == (8, "fp16", 2)
        assert second.details["deploy_s"] < 10
        # The tuning cluster's replicas drain for 0.5 s, not a serving cluster's 2 s (no traffic between trials).
        assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0.5"
    finally:
        runner.shutdown()


def test_a_client_on_another_node_is_refused_on_a_one_node_cluster(model, cluster) -> None:
    """Before any trial, naming the field, the cluster's node count and the fix."""
    with pytest.raises(TunerError, match=r"serving.client_node = 'other'.*1 node\(s\).*client_node: same"):
        served(model, cluster, client_node="other")


def test_server_mode_offers_poisson_arrivals_at_the_target_rate_over_json(model, cluster) -> None:
    rate = 40.0
    runner = served(model, cluster, LoadSpec(mode="server", target_rps=rate), binary=False, engine_ceiling=False)
    try:
        result = runner.run(TrialConfig("cpu", 2, "fp32", 1, 1))
        d = result.details
        assert d["level"] == "served" and d["binary"] is False and d["concurrency"] is None
        assert "engine" not in d and "serving_efficiency" not in d
        # A replica that serves thousands per second keeps up: it answers what is offered.
        assert 0.5 * rate < result.throughput_rps < 1.5 * rate
        assert d["requests_failed"] == 0
    finally:
        runner.shutdown()
