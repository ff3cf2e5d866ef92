"""The default sampler's start tells a call's fixed cost from its cost per instance, and a
configuration that could not run rules out those that need at least as much memory."""

from __future__ import annotations

import math

import optuna

from tests.test_samplers import CLUSTER, context
from tuner.config import TrialConfig
from tuner.metrics import OBJECTIVES, directions_for
from tuner.prices import load_prices
from tuner.search.samplers import make_sampler
from tuner.search.structured import _needs_as_much
from tuner.search.suggest import suggest
from tuner.search.surrogate import Observation, SpeedModel
from tuner.spec.load import load_space

ACCURACY = {"fp32": 0.98, "fp16": 0.98, "int8": 0.90}
MEMORY_LIMIT = 64  # batch x replicas: a trial above it cannot run


def flat(c: TrialConfig) -> dict[str, float]:
    """ResNet-18 on 2 cores: no fixed cost per call (throughput flat in the batch size)."""
    call = 0.033 * c.batch_size * {(1, 1): 1.0, (2, 1): 1.1, (1, 2): 0.55}[(c.replicas, c.threads_per_replica)]
    tput = c.replicas * c.batch_size / call
    return {"throughput_rps": tput, "latency_p95_ms": call * 1.3e3,
            "cost_usd_per_million": load_prices().cost_usd_per_million(c, tput)}


def study_of(trials: int, memory_limit: float = math.inf) -> tuple[optuna.Study, list[TrialConfig]]:
    space = load_space("default")
    ctx = context(space)
    study = optuna.create_study(directions=directions_for(OBJECTIVES), sampler=make_sampler("default", 0, ctx))
    seen = []
    for _ in range(trials):
        trial = study.ask()
        c = suggest(space, trial, CLUSTER)
        seen.append(c)
        trial.set_constraint("accuracy", 0.99 * 0.98 - ACCURACY[c.precision])
        runs = c.platform != "cpu" or c.batch_size * c.replicas <= memory_limit
        trial.set_constraint("runnable", 0.0 if runs else 1.0)
        m = (flat(c) if c.platform == "cpu" else ctx.estimates[c]) if runs else None
        study.tell(trial, [m[k] for k in OBJECTIVES] if m else [0.0, math.inf, math.inf])
    return study, seen


def test_the_start_measures_the_middle_and_the_smallest_batch_on_every_core() -> None:
    _, seen = study_of(2)
    batches = sorted(load_space("default").platforms.cpu.batch_size.values())
    middle, smallest = (TrialConfig("cpu", b, "fp32", CLUSTER.total_cpus, 1) for b in (batches[len(batches) // 2], batches[0]))
    assert seen == [middle, smallest]


def test_two_batch_sizes_tell_a_flat_landscape_from_the_priors_fixed_cost() -> None:
    # With one batch size the fit sits at its prior (fixed cost = one instance's cost) and predicts
    # batch 2 at about 2/3 of its speed; with the start's two batch sizes it knows it is flat.
    _, seen = study_of(2)
    one = SpeedModel([Observation(seen[0], **_speed(seen[0]))])
    two = SpeedModel([Observation(c, **_speed(c)) for c in seen])
    target = TrialConfig("cpu", 2, "fp32", 2, 1)
    assert one.predict(target)[0] < 0.75 * flat(target)["throughput_rps"]
    assert two.predict(target)[0] > 0.95 * flat(target)["throughput_rps"]


def _speed(c: TrialConfig) -> dict[str, float]:
    m = flat(c)
    return {"throughput_rps": m["throughput_rps"], "latency_p95_ms": m["latency_p95_ms"]}


def test_a_configuration_that_could_not_run_rules_out_larger_ones() -> None:
    _, seen = study_of(30, memory_limit=MEMORY_LIMIT)
    failed = [c for c in seen if c.platform == "cpu" and c.batch_size * c.replicas > MEMORY_LIMIT]
    assert failed, "the landscape's best throughput is at large batches: the search must meet the limit"
    for i, c in enumerate(seen):
        for f in failed:
            if seen.index(f) < i:
                bigger = (c.platform, c.precision) == (f.platform, f.precision) and c.batch_size >= f.batch_size \
                    and c.replicas >= f.replicas and c.threads_per_replica >= f.threads_per_replica
                assert not bigger, (c, f)
    # ... and nothing that needs less: fewer replicas or threads, a smaller batch, another precision.
    f = TrialConfig("cpu", 64, "fp32", 2, 1)
    assert _needs_as_much(TrialConfig("cpu", 128, "fp32", 2, 1), f) and _needs_as_much(TrialConfig("cpu", 64, "fp32", 2, 1), f)
    assert not _needs_as_much(TrialConfig("cpu", 128, "fp32", 2, 1), TrialConfig("cpu", 64, "fp32", 2, 2))
    for c in [TrialConfig("cpu", 64, "fp32", 1, 2), TrialConfig("cpu", 32, "fp32", 2, 1), TrialConfig("cpu", 64, "fp16", 2, 1)]:
        assert not _needs_as_much(c, f)
