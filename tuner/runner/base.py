"""The seam between the study loop and whatever runs a trial: the `Runner` protocol and
`TrialFailed`. No Ray here, so the loop and its tests need no cluster.

Two runners implement it: `tuner.runner.trial.RayRunner` (the product: placement on a Ray
cluster, pinned replica actors, time-outs, failures) and `tuner.runner.local.LocalRunner`
(in this process: replicas as threads, for unit tests of the loop and for quick checks).
"""

from __future__ import annotations

from typing import Protocol

from tuner.config import TrialConfig
from tuner.metrics import PerfResult


class TrialFailed(Exception):
    """A trial could not be measured. `infeasible` marks causes the config itself implies
    (out of memory, a layout the cluster can never hold): they are reported to the sampler as
    constraint violations, not FAIL, so it learns and does not propose them again."""

    def __init__(self, reason: str, *, infeasible: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.infeasible = infeasible


class Runner(Protocol):
    """Runs one configuration and returns what its evaluator measured (or estimated).

    `run` is called from several threads at once when trials run in parallel, so an
    implementation must be thread-safe.
    """

    def run(self, config: TrialConfig) -> PerfResult:
        """Measure `config`; raises `TrialFailed` when it cannot be measured."""
        ...

    def shutdown(self) -> None:
        """Release what the runner holds (idle workers); called once, at the end of a run."""
        ...

    def abort(self) -> None:
        """Interrupted: end every running trial now (their `run` calls raise soon after)."""
        ...
