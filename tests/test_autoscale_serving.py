"""Autoscaling on real Ray Serve (issue 19's done-when): a deployment whose autoscaling_config
comes from `tuner.deploy.autoscale` adds replicas under a load step up and removes them after the
load stops. tuner's local serving cluster (`ray start`, Serve's REST API, HAProxy fast path), a
tiny ONNX model, a real V2 client; short delays so it takes about a minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving import deploy as serve_deploy
from serving.loadgen import drive_background
from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config, write_serve_config
from tuner.config import TrialConfig
from tuner.deploy.autoscale import Traffic, capacity_of, plan_autoscaling
from tuner.metrics import Metrics
from tuner.models.spec import InputSpec
from tuner.record import TrialRecord

from helpers import free_port
from servers import matmul_model

pytestmark = pytest.mark.integration

APP = "tuner"


class ReplicaTimeline:
    """Serve's RUNNING replicas of the app, polled every `period_s` in a thread: (seconds, count)."""

    def __init__(self, cluster: serve_deploy.ServeCluster, period_s: float = 0.5) -> None:
        self.cluster, self.period_s = cluster, period_s
        self.points: list[tuple[float, int]] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = sum(serve_deploy.running_replicas(self.cluster, APP).values())
            except Exception:  # a missed poll is no data point, not a failure
                n = -1
            self.points.append((round(time.monotonic() - self.t0, 1), n))
            self._stop.wait(self.period_s)

    @property
    def now(self) -> int:
        return self.points[-1][1] if self.points else -1

    def wait_for(self, test: Callable[[int], bool], timeout_s: float) -> float | None:
        """Seconds until `test(count)` held (None: it did not within `timeout_s`)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.points and test(self.now):
                return time.monotonic() - start
            time.sleep(0.2)
        return None

    def changes(self) -> list[tuple[float, int]]:
        """The points where the count changed (the first one included)."""
        return [p for i, p in enumerate(self.points) if i == 0 or p[1] != self.points[i - 1][1]]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def cluster() -> Iterator[serve_deploy.ServeCluster]:
    c = serve_deploy.local_cluster(start=True)
    assert c is not None
    try:
        yield c
    finally:
        serve_deploy.stop_local_cluster()  # shuts Serve down and kills the cluster's processes


def test_a_load_step_up_and_down_adds_and_removes_replicas(cluster: serve_deploy.ServeCluster,
                                                           tmp_path: Path) -> None:
    # A trial of 1 replica, batch 1 (max_ongoing_requests 2) measured at 2 requests in flight:
    # target_ongoing_requests = 2 / 1.25 = 1.6, below the 2 a saturated replica holds.
    trial = TrialRecord(0, "COMPLETE", TrialConfig("cpu", 1, "fp32", 1, 1),
                        Metrics(500.0, 2.0, 4.0, 5.0, 1.0, 0.01, False), True, True, level="served")
    capacity = capacity_of(trial, {"mode": "offline", "concurrency": 2}, max_ongoing_requests=2, cpus_per_replica=1)
    # planned 400 inf/s per replica: LOW 100 -> 1 replica, HIGH 600 -> 2 (the 2 CPUs of this machine)
    plan = plan_autoscaling(capacity, Traffic(100, 600, upscale_delay_s=1.0, downscale_delay_s=5.0), cluster_cpus=2)
    assert (plan.min_replicas, plan.initial_replicas, plan.max_replicas) == (1, 1, 2)
    assert plan.target_ongoing_requests == pytest.approx(1.6)
    print(plan.describe())

    model = tmp_path / "m.onnx"
    matmul_model(model, ["N", 4])
    port = free_port()
    config = make_serve_config(TrialConfig("cpu", 1, "fp32", 1, 1), ServedModel("m", str(model)),
                               ServingOptions(port=port, autoscaling_config=plan.serve_config()))
    path = write_serve_config(config, tmp_path / "serve.yaml", comment=plan.describe())
    took = serve_deploy.deploy(cluster, path, APP)
    print(f"deployed in {took:.1f} s")
    deployment = serve_deploy.status(cluster)["applications"][APP]["deployments"]["ModelServer"]
    assert deployment["deployment_config"]["autoscaling_config"]["max_replicas"] == 2  # what Serve runs

    url, inputs = f"http://127.0.0.1:{port}", [InputSpec("x", (4,), "float32")]
    timeline = ReplicaTimeline(cluster)
    try:
        assert timeline.wait_for(lambda n: n == 1, 10) is not None, timeline.points
        # Low: 5 req/s of 1 instance, about 0.01 in flight: well under the target; stays at min.
        with drive_background(url, "m", inputs, "server", 1, target_rps=5) as low:
            time.sleep(6)
            low_result = low.stop()
        assert timeline.now == 1 and {n for _, n in timeline.points} == {1}, timeline.points
        t_high = timeline.points[-1][0]
        # High: a closed loop of 16 requests in flight; each replica holds at least its 2 (> 1.6).
        with drive_background(url, "m", inputs, "offline", 1, concurrency=16) as high:
            up_s = timeline.wait_for(lambda n: n > plan.min_replicas, 40)
            time.sleep(3)  # served on both replicas for a while
            high_result = high.stop()
        t_stop = timeline.points[-1][0]
        assert up_s is not None, f"no replica was added under load: {timeline.changes()}"
        down_s = timeline.wait_for(lambda n: n == plan.min_replicas, 45)
        time.sleep(1)
    finally:
        timeline.stop()
    print(f"low load: {low_result.summary()}")
    print(f"high load from t={t_high} s: {high_result.summary()}; up after {up_s:.1f} s")
    print(f"load stopped at t={t_stop} s; back to min after {down_s} s")
    print(f"replica count changes (t s, replicas): {timeline.changes()}")
    assert down_s is not None, f"replicas were not removed after the load stopped: {timeline.changes()}"
    assert max(n for _, n in timeline.points) == plan.max_replicas  # never beyond max_replicas
    assert low_result.requests_failed == 0 and high_result.requests_ok > 100, high_result.summary()
