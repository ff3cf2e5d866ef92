"""Exclusive cores: nodes sharing a host split its cores; trials never share one."""

from __future__ import annotations

import threading

from tuner.runner.cores import CoreAllocator, split_host_cores


def test_nodes_on_one_host_split_its_cores_and_never_exceed_them() -> None:
    nodes = split_host_cores([("b", "vm", 2), ("a", "vm", 1)], {"vm": [0, 1]})
    assert [(n.node_id, n.cores) for n in nodes] == [("a", (0,)), ("b", (1,))]  # b wanted 2, 1 is left


def test_nodes_on_different_hosts_keep_their_own_cores() -> None:
    nodes = split_host_cores([("a", "h1", 2), ("b", "h2", 2)], {"h1": [0, 1], "h2": [0, 1]})
    assert [n.cores for n in nodes] == [(0, 1), (0, 1)]


def test_reservations_are_exclusive_and_released() -> None:
    alloc = CoreAllocator(split_host_cores([("a", "vm", 2)], {"vm": [0, 1]}))
    first = alloc.try_reserve(1, 1)
    second = alloc.try_reserve(1, 1)
    assert first and second and first[0].cores != second[0].cores
    assert alloc.try_reserve(1, 1) is None  # both cores busy
    alloc.release(first)
    again = alloc.try_reserve(1, 1)
    assert again is not None and again[0].cores == first[0].cores


def test_a_replica_needs_all_its_threads_on_one_node() -> None:
    alloc = CoreAllocator(split_host_cores([("a", "h1", 1), ("b", "h2", 1)], {"h1": [0], "h2": [0]}))
    assert not alloc.can_ever_fit(1, 2)      # 2 cores in the cluster, but 1 per node
    assert alloc.can_ever_fit(2, 1)
    placed = alloc.try_reserve(2, 1)
    assert {p.node_id for p in placed} == {"a", "b"}  # spread across nodes


def test_reserve_waits_until_a_running_trial_releases() -> None:
    alloc = CoreAllocator(split_host_cores([("a", "vm", 2)], {"vm": [0, 1]}))
    held = alloc.try_reserve(1, 2)
    got = []
    t = threading.Thread(target=lambda: got.append(alloc.reserve(1, 1, timeout_s=10)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and not got  # still waiting
    alloc.release(held)
    t.join(5)
    assert got and got[0] is not None
    assert alloc.reserve(2, 1, timeout_s=0.1) is None  # one core is taken: times out


def test_an_exclusive_trial_holds_its_whole_host() -> None:
    alloc = CoreAllocator(split_host_cores([("a", "vm", 1), ("b", "vm", 1), ("c", "other", 1)],
                                           {"vm": [0, 1], "other": [0]}))
    first = alloc.try_reserve(1, 1, exclusive=True)
    assert first is not None
    host = "other" if first[0].node_id == "c" else "vm"
    second = alloc.try_reserve(1, 1, exclusive=True)
    assert second is not None and second[0].node_id not in {first[0].node_id}
    assert alloc.try_reserve(1, 1) is None            # both hosts held: nothing else runs
    alloc.release(first, exclusive=True)
    third = alloc.try_reserve(1, 1)
    assert third is not None
    assert {n.host for n in alloc.nodes if n.node_id == third[0].node_id} == {host}


def test_shared_hosts_run_side_by_side() -> None:
    alloc = CoreAllocator(split_host_cores([("a", "vm", 2)], {"vm": [0, 1]}))
    assert alloc.try_reserve(1, 1) is not None and alloc.try_reserve(1, 1) is not None
