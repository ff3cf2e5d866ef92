"""Every --sampler proposes only configurations the cluster can run; tuner's default never
repeats one and finds a synthetic front fast; the stopping rules stop."""

from __future__ import annotations

import time

import optuna
import pytest

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.metrics import OBJECTIVES, directions_for
from tuner.prices import load_prices
from tuner.search.context import SamplerContext
from tuner.search.samplers import SAMPLERS, make_sampler
from tuner.search.stopping import Stopper
from tuner.search.suggest import enumerate_configs, suggest
from tuner.spec.load import load_space

CLUSTER = ClusterInfo(total_cpus=2, max_node_cpus=2, fpga_devices={"aws-f1": 2})


def speed(c: TrialConfig) -> dict[str, float]:
    """A landscape of the structural form (fixed cost + cost per instance)."""
    call = (2e-4 + 5e-5 * c.batch_size) * {(1, 1): 1.0, (2, 1): 1.1, (1, 2): 0.6}[(c.replicas, c.threads_per_replica)]
    if c.precision == "int8":
        call *= 0.5
    tput = c.replicas * c.batch_size / call
    return {"throughput_rps": tput, "latency_p95_ms": call * 1.3e3,
            "cost_usd_per_million": load_prices().cost_usd_per_million(c, tput)}


def context(space) -> SamplerContext:
    fpga = {c: {"throughput_rps": 1e4 * c.replicas, "latency_p95_ms": 5.0,
                "cost_usd_per_million": load_prices().cost_usd_per_million(c, 1e4 * c.replicas)}
            for c in enumerate_configs(space, CLUSTER) if c.platform == "fpga"}
    return SamplerContext(space, CLUSTER, accuracy={"fp32": 0.98, "fp16": 0.98, "int8": 0.90}, fp32_accuracy=0.98,
                          estimates=fpga, usd_per_hour=load_prices().usd_per_hour)


def run(name: str, trials: int) -> list[TrialConfig]:
    space = load_space("default")
    study = optuna.create_study(directions=directions_for(OBJECTIVES),
                                sampler=make_sampler(name, 0, context(space)))
    seen = []
    for _ in range(trials):
        trial = study.ask()
        c = suggest(space, trial, CLUSTER)
        seen.append(c)
        m = speed(c) if c.platform == "cpu" else context(space).estimates[c]
        trial.set_constraint("accuracy", 0.99 * 0.98 - {"fp32": 0.98, "fp16": 0.98, "int8": 0.90}[c.precision])
        study.tell(trial, [m[k] for k in OBJECTIVES])
    return seen


@pytest.mark.parametrize("name", [s for s in SAMPLERS if s != "gp"] + ["gp"])
def test_every_sampler_proposes_only_runnable_configurations(name: str) -> None:
    grid = set(enumerate_configs(load_space("default"), CLUSTER))
    for c in run(name, 12 if name != "gp" else 6):
        assert c in grid


def test_default_sampler_never_repeats_and_skips_precisions_below_the_accuracy_floor() -> None:
    seen = run("default", 30)
    assert len(set(seen)) == len(seen)
    assert all(c.precision != "int8" for c in seen if c.platform == "cpu")  # 0.90 < 0.99 x 0.98


def test_unknown_sampler_is_refused() -> None:
    from tuner.errors import TunerError

    with pytest.raises(TunerError, match="--sampler"):
        make_sampler("annealing", 0)


def test_patience_stops_when_the_front_stops_improving() -> None:
    stop = Stopper(list(OBJECTIVES), patience=3)
    stop.observe({"throughput_rps": 10, "latency_p95_ms": 5, "cost_usd_per_million": 1}, True)
    stop.observe({"throughput_rps": 20, "latency_p95_ms": 5, "cost_usd_per_million": 1}, True)  # improves
    assert stop.reason() is None
    for _ in range(3):
        stop.observe({"throughput_rps": 5, "latency_p95_ms": 9, "cost_usd_per_million": 2}, True)  # dominated
    assert "has not improved for 3 trials" in stop.reason()


def test_timeout_stops() -> None:
    stop = Stopper(list(OBJECTIVES), timeout_s=0.05)
    assert stop.reason() is None
    time.sleep(0.06)
    assert "--timeout-s" in stop.reason()
