"""Placement on a real two-node Ray cluster on this machine (Ray's own cluster utilities)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings

pytestmark = pytest.mark.integration

QUICK = MeasurementSettings(warmup_s=0.1, window_s=0.3, min_windows=2, max_windows=2, target_requests=50)


def runner_for(model, cluster, settings=QUICK) -> RayRunner:
    return RayRunner(model, settings, LoadSpec(), {}, cluster)


def cpu(batch: int = 8, replicas: int = 1, threads: int = 1) -> TrialConfig:
    return TrialConfig("cpu", batch, "fp32", replicas, threads)


def test_two_node_cluster_places_trials_where_the_cores_are() -> None:
    """Head without CPUs, worker with 2: a 1x2 trial must land on the worker."""
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


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[RayCluster]:
    """Two nodes of one CPU each, on this machine."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    try:
        cluster = RayCluster(nodes.address)
        try:
            yield cluster
        finally:
            cluster.shutdown()
    finally:
        nodes.shutdown()


def test_parallel_trials_take_different_nodes_unless_hosts_are_exclusive(two_nodes) -> None:
    """Two trials at once land on different nodes and cores; with exclusive hosts the second waits."""
    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    cluster = two_nodes
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


def test_served_trial_with_its_client_on_the_other_node(two_nodes) -> None:
    """serving.client_node = other: the replicas are pinned to the node reserved for the trial,
    the load client is a Ray actor on the other node, and the record says where each ran."""
    import ray

    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    runner = RayRunner(model, QUICK, LoadSpec(), {}, two_nodes, level="served",
                       served=ServedSettings(client_node="other", engine_ceiling=False))
    try:
        result = runner.run(cpu(batch=8))
    finally:
        runner.shutdown()
    placed = result.details["client_placement"]
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert placed["requested"] == "other" and placed["where"] == "other node, same machine"
    assert placed["node_id"] != placed["replicas_node_id"] and {placed["node_id"], placed["replicas_node_id"]} == node_ids
    assert placed["cores_reserved"] is None  # the trial holds this machine whole
    deployment = result.details["serve_deployment"]
    assert deployment["ray_actor_options"]["label_selector"] == {"ray.io/node-id": placed["replicas_node_id"]}
    client = result.details["stack"]["client"]
    assert client["pid"] not in {*result.details["stack"]["replica_pids"], os.getpid()}
    assert result.throughput_rps > 0 and result.details["requests_failed"] == 0
    assert result.details["stack_cores_used"]["client"] > 0  # the actor's own CPU time, read in the actor

