"""The evaluator contract: what every platform's evaluator is, so the runner never asks which
platform it runs.

Two kinds, by how a platform is evaluated:

- `ReplicaEvaluator` (measured platforms: cpu, gpu): one `Bench` per replica,
  each in its own process (a Ray actor) or thread (`LocalRunner`), driven window by window by
  `tuner.evaluators.windows.run_protocol` through a `Broadcast`.
- `EstimateEvaluator` (modelled platforms: fpga): one pure function of the model's bytes and the
  configuration; its figures are estimates (`PerfResult.estimated` is True).

`tuner.evaluators.registry` maps each platform to its evaluator; a new platform or measurement
level is one new module plus its line there. The checks every evaluator must pass ship in
`tuner.testing.contract` and run over every evaluator in tests/test_evaluator_contract.py.
No Ray, pydantic or Optuna here: replica processes and a bare GPU machine import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, Union

import numpy as np

from tuner.config import TrialConfig
from tuner.metrics import PerfResult
from tuner.models.data import integer_input
from tuner.models.spec import InputSpec

#: Calls a bench method by name on every replica at once and returns their results in replica
#: order; `args` is one tuple for all replicas, or a list with one tuple per replica.
Broadcast = Callable[[str, Union[tuple, list]], list]


class Bench(Protocol):
    """One replica of a measured platform: the contract `run_protocol` relies on."""

    def prepare(self, key: str, model: Any, inputs: tuple[InputSpec, ...], batch_size: int) -> bool:
        """Make `key`'s model current at `batch_size`; True when it was already built."""
        ...

    def info(self) -> dict[str, Any]:
        """Where and how this replica measures (JSON-ready: node, pid, cores or device...)."""
        ...

    def run_for(self, seconds: float, min_calls: int) -> Any:
        """Offline: calls back to back for >= `seconds` and >= `min_calls`; a WindowSample."""
        ...

    def serve_for(self, seconds: float, rate_rps: float, max_wait_s: float, seed: int) -> Any:
        """Server: seeded Poisson arrivals at `rate_rps`, batched; a WindowSample of requests."""
        ...


def no_key(config: TrialConfig) -> Hashable:
    """A bench that depends on nothing but its cores (the default `bench_key`)."""
    return None


def no_resources(config: TrialConfig) -> dict[str, float]:
    """A replica that needs nothing from Ray but its cores (the default `actor_resources`)."""
    return {}


def no_refusal(config: TrialConfig) -> str | None:
    """Every configuration of the platform can run (the default `refuses`)."""
    return None


def no_record(config: TrialConfig, replicas_info: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Nothing to add to a trial's record (the default `record`)."""
    return None


@dataclass(frozen=True)
class ReplicaEvaluator:
    """A measured platform: `make_bench(config, cores)` builds one replica's bench inside its
    process; the runner gives each replica `cores_per_replica(config)` exclusive cores.

    Attributes:
        platform: the platform it evaluates ("cpu").
        level: what the figures measure ("engine": the runtime in a bench process).
        make_bench: builds the bench of one replica, given the cores it is pinned to (or None
            to leave placement to the OS).
        cores_per_replica: exclusive cores one replica needs.
        bench_key: what else, besides its cores, a bench is built for; a replica process kept
            from an earlier trial is reused only for the same key (cpu: nothing else).
        actor_resources: Ray resources a replica's actor asks for besides its cores, e.g.
            {"num_gpus": 0.5} (gpu); none for cpu.
        refuses: why a configuration cannot run here (recorded as infeasible, never retried),
            or None.
        record: what a trial of the platform adds to its record under the platform's name
            (gpu: backend, num_gpus, GPU memory), from the replicas' `info()`; None for nothing.
    """

    platform: str
    make_bench: Callable[[TrialConfig, Sequence[int] | None], Bench]
    cores_per_replica: Callable[[TrialConfig], int]
    bench_key: Callable[[TrialConfig], Hashable] = no_key
    actor_resources: Callable[[TrialConfig], dict[str, float]] = no_resources
    refuses: Callable[[TrialConfig], str | None] = no_refusal
    record: Callable[[TrialConfig, list[dict[str, Any]]], dict[str, Any] | None] = no_record
    level: str = "engine"
    estimated: bool = False


@dataclass(frozen=True)
class EstimateEvaluator:
    """A modelled platform: `estimate(model_bytes, input_shapes, config, device)` -> PerfResult.

    Attributes:
        platform: the platform it prices ("fpga").
        estimate: the cost model; `input_shapes` are full shapes at batch 1, `device` the catalog
            entry of `config.device`.
        variant: the precision variant whose bytes the model reads.
        level: "estimate": figures come from a model, never a measurement.
    """

    platform: str
    estimate: Callable[[bytes, dict[str, list[int]], TrialConfig, Any], PerfResult]
    variant: str = "int8"
    level: str = "estimate"
    estimated: bool = True


Evaluator = Union[ReplicaEvaluator, EstimateEvaluator]


def timing_inputs(specs: tuple[InputSpec, ...], batch: int) -> dict[str, np.ndarray]:
    """Seeded inputs for timing (every bench uses this recipe): values do not change the work
    of dense kernels."""
    rng = np.random.default_rng(batch)
    feeds = {}
    for s in specs:
        shape = (batch, *s.shape)
        if np.issubdtype(np.dtype(s.dtype), np.floating):
            feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
        else:
            feeds[s.name] = integer_input(s.name, s.dtype, shape, rng)
    return feeds


def thread_broadcast(benches: Sequence[Any], pool: ThreadPoolExecutor) -> Broadcast:
    """A `Broadcast` over benches living in this process, one thread each."""

    def broadcast(method: str, args: tuple | list) -> list:
        per = args if isinstance(args, list) else [args] * len(benches)
        return list(pool.map(lambda ba: getattr(ba[0], method)(*ba[1]), zip(benches, per)))

    return broadcast
