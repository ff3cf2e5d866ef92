"""Metrics of one trial, the study's objectives, and its constraints.

Evaluators return a `PerfResult` (speed only). The driver adds accuracy (measured once
per precision variant) and cost (price table) to make `Metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Direction = Literal["maximize", "minimize"]

# The objectives a study may use, with their directions. The default study uses all three,
# in this order; names are set on the study so the dashboard shows them.
OBJECTIVE_DIRECTIONS: dict[str, Direction] = {
    "throughput_rps": "maximize",
    "latency_p95_ms": "minimize",
    "cost_usd_per_million": "minimize",
}
OBJECTIVES: tuple[str, ...] = tuple(OBJECTIVE_DIRECTIONS)
DIRECTIONS: tuple[Direction, ...] = tuple(OBJECTIVE_DIRECTIONS.values())


def directions_for(objectives: Sequence[str]) -> list[Direction]:
    return [OBJECTIVE_DIRECTIONS[o] for o in objectives]


def worst_values(objectives: Sequence[str]) -> list[float]:
    """Objective values told for a configuration that could not run at all: nothing was
    measured (0 throughput, unbounded latency and cost), and it is infeasible anyway."""
    return [0.0 if OBJECTIVE_DIRECTIONS[o] == "maximize" else float("inf") for o in objectives]

METRIC_KEYS: tuple[str, ...] = (
    "throughput_rps",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "accuracy",
    "cost_usd_per_million",
    "estimated",
    "error_band",
)


@dataclass(frozen=True)
class PerfResult:
    """What an evaluator measured (or, if `estimated`, predicted) for one configuration.

    Attributes:
        throughput_rps: inferences per second across all replicas.
        latency_p50_ms / latency_p95_ms / latency_p99_ms: per-request latency percentiles; a
            request is one model call of `batch_size` inferences.
        estimated: True when the figures come from a model, not a measurement.
        details: evaluator-specific facts (requests counted, windows, per-layer costs...).
    """

    throughput_rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    estimated: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorBand:
    """The expected error of an estimated figure, as a factor either way (x1.2 = within 1/1.2 to 1.2x).

    Attributes:
        typical_factor: geometric mean of the error factors on published figures the fit did
            not use.
        worst_factor: the largest of them.
        calibrated: whether the board's own published figures calibrated the model.
        rows: how many held-out figures the factors come from.
        basis: where the factors come from, in words.
    """

    typical_factor: float
    worst_factor: float
    calibrated: bool
    rows: int
    basis: str

    def label(self) -> str:
        """E.g. "x1.15 typical, x1.46 worst (calibrated)"."""
        return (f"x{self.typical_factor:.2f} typical, x{self.worst_factor:.2f} worst "
                f"({'calibrated' if self.calibrated else 'uncalibrated'})")

    def short(self) -> str:
        """For a table cell: "x1.15/x1.46" (typical/worst), "x2.00/x4.00 uncalibrated"."""
        text = f"x{self.typical_factor:.2f}/x{self.worst_factor:.2f}"
        return text if self.calibrated else f"{text} uncalibrated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> ErrorBand | None:
        if raw is None:
            return None
        band = cls(float(raw["typical_factor"]), float(raw["worst_factor"]), bool(raw["calibrated"]),
                   int(raw["rows"]), str(raw["basis"]))
        if not 1.0 <= band.typical_factor <= band.worst_factor:
            raise ValueError(f"need 1 <= typical_factor <= worst_factor, got {band.typical_factor}, "
                             f"{band.worst_factor}")
        return band


@dataclass(frozen=True)
class Metrics:
    """All metrics of a trial, keyed as in `tuner show --json`.

    `error_band`: for an estimate, its expected error (None for a measurement, and for
    estimates recorded before bands existed).
    """

    throughput_rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    accuracy: float
    cost_usd_per_million: float
    estimated: bool
    error_band: ErrorBand | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def objective_values(self, objectives: Sequence[str] = OBJECTIVES) -> list[float]:
        """The values the search and the Pareto front rank: the figures themselves, except that
        an estimate with an error band competes at the pessimistic end of its typical band
        (throughput divided by the factor, latency and cost multiplied by it)."""
        factor = self.error_band.typical_factor if self.estimated and self.error_band else 1.0
        return [float(getattr(self, name)) / factor if OBJECTIVE_DIRECTIONS[name] == "maximize"
                else float(getattr(self, name)) * factor for name in objectives]


def latency_percentiles_ms(latencies_s: np.ndarray) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds of request latencies given in seconds.

    Uses the "higher" rule so a reported percentile is always a latency that was observed.
    """
    if latencies_s.size == 0:
        raise ValueError("no latencies recorded")
    p = np.percentile(latencies_s, [50, 95, 99], method="higher") * 1e3
    return float(p[0]), float(p[1]), float(p[2])


@dataclass(frozen=True)
class Constraints:
    """Constraints handed to the sampler with `trial.set_constraint` (feasible when <= 0).

    Attributes:
        accuracy_min_ratio: a variant must keep at least this share of the fp32 accuracy.
        latency_p95_ms_max: optional p95 SLO in milliseconds.
        cost_usd_per_million_max: optional cost ceiling.
    """

    accuracy_min_ratio: float = 0.99
    latency_p95_ms_max: float | None = None
    cost_usd_per_million_max: float | None = None

    def values(self, metrics: Metrics, fp32_accuracy: float) -> dict[str, float]:
        """Constraint values keyed by name; each is feasible when <= 0."""
        out = {"accuracy": self.accuracy_min_ratio * fp32_accuracy - metrics.accuracy}
        if self.latency_p95_ms_max is not None:
            out["latency_p95_ms"] = metrics.latency_p95_ms - self.latency_p95_ms_max
        if self.cost_usd_per_million_max is not None:
            out["cost_usd_per_million"] = (
                metrics.cost_usd_per_million - self.cost_usd_per_million_max
            )
        return out


def is_feasible(constraint_values: dict[str, float]) -> bool:
    return all(v <= 0.0 for v in constraint_values.values())
