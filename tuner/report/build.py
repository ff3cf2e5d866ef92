"""Study data -> a typed report model. Pure: no storage, no files, no HTML.

Input is the study's typed trial records (`tuner.study.readback.study_record`) and its user
attributes (``model``, ``prices``, ``search_space``, ``load``, ``runs``,
``promotions``). Every later stage (plots, HTML) reads only the `Report` built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.front.selection import DEFAULT_POLICY, POLICIES, choose
from tuner.metrics import ErrorBand, Metrics
from tuner.record import StudyRecord, TrialRecord

METRIC_NAMES = ("throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "accuracy",
                "cost_usd_per_million")
ACCURACY_LABELS = {"top1_accuracy": "top-1 accuracy", "fidelity": "fidelity"}
_PROMOTION_KEYS = {"time": ("time", "at", "when"), "user": ("user", "by"), "trial": ("trial", "number"),
                   "policy": ("policy",), "reason": ("reason",), "verdict": ("verdict", "result"),
                   "served": ("served", "served_figures"),
                   "figures": ("trial_figures", "figures", "trial_metrics", "expected")}


def band_text(band: ErrorBand) -> str:
    """An estimate's error band as the report writes it: "x1.15 typical, x1.46 worst (calibrated)"."""
    return band.label()


@dataclass(frozen=True)
class Remeasure:
    """A finalist's repeated measurements: `samples` runs, [min, max] of each metric."""

    samples: int
    throughput_cv: float
    spread: Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class TrialPoint:
    """One COMPLETE, measured (or estimated) trial. Finalists carry their medians in `metrics`."""

    number: int
    config: TrialConfig
    metrics: Metrics
    feasible: bool
    pareto: bool
    price_key: str
    remeasured: Remeasure | None = None
    violations: Mapping[str, float] = field(default_factory=dict)  # constraint name -> amount over (> 0)
    level: str | None = None  # "served", "engine" or "estimate" (docs/measurement.md)
    engine_throughput_rps: float | None = None  # the engine-level ceiling of a served trial
    serving_efficiency: float | None = None  # served / engine throughput
    test_backend: bool = False  # a gpu trial of the TEST backend (CPU figures behind a declared GPU)
    disturbed: bool = False  # measured while other work took its cores (tuner.record.TrialRecord.disturbed)

    @property
    def estimated(self) -> bool:
        return self.metrics.estimated

    @property
    def error_band(self) -> ErrorBand | None:
        """An estimate's expected error (None for a measurement, or an estimate recorded without one)."""
        return self.metrics.error_band if self.estimated else None

    @property
    def status(self) -> str:
        """"pareto" (feasible and not dominated), "feasible" or "infeasible"."""
        return "pareto" if self.pareto else ("feasible" if self.feasible else "infeasible")

    @property
    def label(self) -> str:
        """e.g. "cpu int8 b16 2x1t" or "fpga[aws-f1] int8 b8 4 cores (est.)"."""
        return self.config.label() + (" (est.)" if self.estimated else "") + (" (TEST backend)" if self.test_backend else "")


@dataclass(frozen=True)
class Promotion:
    """One entry of the study attribute ``promotions``; keys it does not know land in `extra`."""

    time: str
    user: str
    trial: int | None
    policy: str
    reason: str
    verdict: str
    served: Any
    figures: Any
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class Chosen:
    """The configuration to deploy: the latest promotion, or the default policy's pick."""

    number: int | None
    point: TrialPoint | None
    source: str  # "promotion" or "policy"
    reason: str
    runners_up: tuple[TrialPoint, ...] = ()
    note: str = ""
    promotion: Promotion | None = None


@dataclass(frozen=True)
class AccuracyRow:
    precision: str
    accuracy: float
    ratio_to_fp32: float | None
    meets_floor: bool | None


@dataclass(frozen=True)
class Accuracy:
    """Accuracy per precision variant, and what the figure means."""

    metric: str
    metric_label: str
    description: str
    floor_ratio: float | None
    rows: tuple[AccuracyRow, ...]
    calibration: str = ""  # what the calibration and evaluation inputs were
    left_out: tuple[tuple[str, str], ...] = ()  # (precision, why it has no variant)
    interface_notes: tuple[str, ...] = ()  # how tuner's copy's interface differs from the user's file


@dataclass(frozen=True)
class PriceLine:
    key: str
    usd_per_hour: float
    unit: str
    source: str
    trials: int  # complete trials priced by this row


@dataclass(frozen=True)
class StudyFacts:
    study: str
    model_name: str
    model_source: str
    objectives: tuple[tuple[str, str], ...]  # (name, direction)
    constraints: Mapping[str, Any]
    load: Mapping[str, Any]
    counts: Mapping[str, int]  # trials, complete, pareto, feasible, infeasible, estimated, reused, ...
    runs: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Report:
    facts: StudyFacts
    points: tuple[TrialPoint, ...]  # complete, measured, not reused: what the plots show
    chosen: Chosen | None
    chosen_problem: str  # why nothing could be chosen, when `chosen` is None
    accuracy: Accuracy | None
    prices: tuple[PriceLine, ...]
    promotions: tuple[Promotion, ...]
    generated_at: str

    @property
    def front(self) -> tuple[TrialPoint, ...]:
        """The feasible Pareto trials, fastest first."""
        return tuple(sorted((p for p in self.points if p.pareto), key=lambda p: -p.metrics.throughput_rps))


def price_key(config: TrialConfig) -> str:
    """The price row a configuration is charged by (as `tuner.prices.PriceTable.key_for`)."""
    return "cpu.vcpu" if config.platform == "cpu" else f"{config.platform}.{config.device}"


def _point(rec: TrialRecord) -> TrialPoint:
    assert rec.config is not None and rec.metrics is not None  # callers pass measured trials
    again = rec.remeasured
    remeasure = Remeasure(again.samples, again.throughput_cv, dict(again.spread)) if again else None
    violations = {k: float(v) for k, v in rec.constraints.items() if v is not None and v > 0}
    return TrialPoint(rec.number, rec.config, rec.metrics, rec.feasible, rec.pareto, price_key(rec.config),
                      remeasure, violations, rec.level, rec.engine.throughput_rps if rec.engine else None,
                      rec.serving_efficiency, bool(rec.gpu and rec.gpu.test_backend), rec.disturbed)


def _pick(entry: Mapping[str, Any], field: str) -> Any:
    return next((entry[k] for k in _PROMOTION_KEYS[field] if k in entry), None)


def _as_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _promotion(entry: Mapping[str, Any]) -> Promotion:
    trial = _pick(entry, "trial")
    if isinstance(trial, Mapping):
        trial = trial.get("number")
    known = {k for keys in _PROMOTION_KEYS.values() for k in keys}
    return Promotion(
        time=str(_pick(entry, "time") or ""), user=str(_pick(entry, "user") or ""),
        trial=_as_number(trial),
        policy=str(_pick(entry, "policy") or ""), reason=str(_pick(entry, "reason") or ""),
        verdict=str(_pick(entry, "verdict") or ""), served=_pick(entry, "served"),
        figures=_pick(entry, "figures"), extra={k: v for k, v in entry.items() if k not in known})


def _chosen(records: tuple[TrialRecord, ...], points: dict[int, TrialPoint], promotions: tuple[Promotion, ...],
            servable: frozenset[str], objectives: list[str], slo_ms: float | None = None) -> tuple[Chosen | None, str]:
    if promotions:
        last = promotions[-1]
        reason = last.reason or (f"policy {last.policy!r}: {POLICIES[last.policy][0]}" if last.policy in POLICIES
                                 else last.policy)
        return Chosen(last.trial, points.get(last.trial) if last.trial is not None else None, "promotion",
                      reason, promotion=last), ""
    try:  # as promote chooses: a TEST-backend gpu trial is never the policy's choice
        real = tuple(r for r in records if not (r.gpu and r.gpu.test_backend))
        choice = choose(real, DEFAULT_POLICY, servable, slo_ms=slo_ms, objectives=objectives)
    except TunerError as exc:
        return None, str(exc)
    note = ""
    if choice.better_unservable is not None:
        b = points[choice.better_unservable.number]
        note = (f"Trial #{b.number} ({b.label}) ranks first by this policy, but {b.config.platform} trials "
                f"cannot be served on this machine (servable: {', '.join(sorted(servable))}).")
    number = choice.trial.number
    return Chosen(number, points[number], "policy", choice.reason,
                  tuple(points[r.number] for r in choice.runners_up), note), ""


def _accuracy(model: Mapping[str, Any] | None, floor: float | None) -> Accuracy | None:
    if not model or not model.get("variants"):
        return None
    variants = model["variants"]
    fp32 = variants.get("fp32", {}).get("accuracy")
    order = {p: i for i, p in enumerate(("fp32", "bf16", "fp16", "int8"))}
    rows = []
    for precision in sorted(variants, key=lambda p: (order.get(p, 99), p)):
        acc = float(variants[precision]["accuracy"])
        ratio = acc / fp32 if fp32 else None
        rows.append(AccuracyRow(precision, acc, ratio, None if ratio is None or floor is None else ratio >= floor))
    metric = str(model.get("accuracy_metric", ""))
    return Accuracy(metric, ACCURACY_LABELS.get(metric, metric), str(model.get("accuracy_description", "")),
                    floor, tuple(rows), str(model.get("calibration", "")),
                    tuple((str(k), str(v)) for k, v in (model.get("left_out") or {}).items()),
                    tuple(str(n) for n in model.get("interface_notes") or ()))


def _prices(table: Mapping[str, Mapping[str, Any]], points: tuple[TrialPoint, ...]) -> tuple[PriceLine, ...]:
    used: dict[str, int] = {}
    for p in points:
        used[p.price_key] = used.get(p.price_key, 0) + 1
    lines = [PriceLine(k, float(r.get("usd_per_hour", 0.0)), str(r.get("unit", "")), str(r.get("source", "")),
                       used.get(k, 0)) for k, r in table.items()]
    return tuple(sorted(lines, key=lambda line: (line.trials == 0, line.key)))


def _counts(records: tuple[TrialRecord, ...], points: tuple[TrialPoint, ...]) -> dict[str, int]:
    complete = [r for r in records if r.state == "COMPLETE"]
    return {
        "trials": len(records),
        "complete": len(complete),
        "measured": sum(not p.estimated for p in points),
        "estimated": sum(p.estimated for p in points),
        "pareto": sum(p.pareto for p in points),
        "feasible": sum(p.feasible for p in points),
        "infeasible": sum(not p.feasible for p in points),
        "reused": sum(r.reused_from is not None for r in complete),
        "not_runnable": sum(r.metrics is None for r in complete),
        "failed": sum(r.state == "FAIL" for r in records),
        "finalists": sum(p.remeasured is not None for p in points),
    }


def build_report(record: StudyRecord, attrs: Mapping[str, Any], generated_at: str,
                 servable: frozenset[str] = frozenset({"cpu", "gpu"})) -> Report:
    """Assemble the report of one study.

    Args:
        record: the study's trials (`tuner.study.readback.study_record(study)`).
        attrs: the study's user attributes (`study.user_attrs`).
        generated_at: when the report is made (ISO 8601), printed on it.
        servable: platforms this machine can serve; the fallback choice is made among them.

    Returns:
        The report model; `chosen` is None (and `chosen_problem` says why) when the study has
        no feasible Pareto trial on a servable platform and no promotion.
    """
    records = record.trials
    points = tuple(_point(r) for r in records if r.measured)
    by_number = {p.number: p for p in points}
    promotions = tuple(_promotion(p) for p in attrs.get("promotions") or [] if isinstance(p, Mapping))
    space = attrs.get("search_space") or {}
    slo_ms = (space.get("constraints") or {}).get("latency_p95_ms_max")  # promote's default choice honours it
    chosen, problem = _chosen(records, by_number, promotions, servable, list(record.objectives), slo_ms)
    constraints = {k: v for k, v in (space.get("constraints") or {}).items() if v is not None}
    model = attrs.get("model") or {}
    facts = StudyFacts(
        study=record.study, model_name=str(model.get("name", "?")), model_source=str(model.get("source", "?")),
        objectives=tuple(zip(record.objectives, record.directions)), constraints=constraints,
        load=dict(attrs.get("load") or {}), counts=_counts(records, points),
        runs=tuple(r for r in attrs.get("runs") or [] if isinstance(r, Mapping)))
    return Report(facts, points, chosen, problem, _accuracy(model, constraints.get("accuracy_min_ratio")),
                  _prices(attrs.get("prices") or {}, points), promotions, generated_at)
