"""Placement on a real two-node Ray cluster on this machine (Ray's own cluster utilities)."""

from __future__ import annotations

import threading

import pytest

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings

pytestmark = pytest.mark.integration

QUICK = MeasurementSettings(warmup_s=0.1, window_s=0.3, min_windows=2, max_windows=2, target_requests=50)


def runner_for(model, cluster, settings=QUICK) -> RayRunner:
    return RayRunner(model, settings, LoadSpec(), {}, cluster)


def cpu(batch: int = 8, replicas: int = 1, threads: int = 1) -> TrialConfig:
    return TrialConfig("cpu", batch, "fp32", replicas, threads)


def test_two_node_cluster_places_trials_where_the_cores_are() -> None:
    """Head without CPUs, worker with 2: a 1x2 trial must land on the worker; then a cluster
    of two 1-CPU nodes: two trials at once land on different nodes and cores."""
    from ray.cluster_utils import Cluster

    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    worker = nodes.add_node(num_cpus=2)
    try:
        cluster = RayCluster(nodes.address)
        try:
            info = cluster.info({})
            assert info.nodes == 2 and info.max_node_cpus == 2
            result = runner_for(model, cluster).run(cpu(replicas=1, threads=2))
            assert [p["node_id"] for p in result.details["placement"]] == [worker.node_id]
        finally:
            cluster.shutdown()
    finally:
        nodes.shutdown()

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    try:
        cluster = RayCluster(nodes.address)
        try:
            settings = MeasurementSettings(warmup_s=0.1, window_s=1, min_windows=2, max_windows=2, target_requests=50)
            runner = runner_for(model, cluster, settings)
            results: list = []
            threads = [threading.Thread(target=lambda: results.append(runner.run(cpu()))) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            placed = [r.details["placement"][0] for r in results]
            assert len(placed) == 2
            assert placed[0]["node_id"] != placed[1]["node_id"]
            assert set(placed[0]["cores"]).isdisjoint(placed[1]["cores"])
            assert all(r.details["queued_s"] < 1.0 for r in results)  # ran side by side
            # With exclusive hosts a measured trial takes its machine whole: both nodes are on
            # this machine, so the second trial waits for the first.
            exclusive = RayRunner(model, settings, LoadSpec(), {}, cluster, exclusive_hosts=True)
            results = []
            threads = [threading.Thread(target=lambda: results.append(exclusive.run(cpu()))) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert sorted(r.details["queued_s"] > 1.0 for r in results) == [False, True]
            runner.shutdown()
        finally:
            cluster.shutdown()
    finally:
        nodes.shutdown()
