"""Choose one trial to deploy from the feasible Pareto front. Pure: records in, choice out.

Policies (`tuner promote --policy`):
- ``cheapest`` (default): the lowest cost per million inferences among trials meeting the p95
  SLO (the study's, or `--slo-ms`); ties: higher throughput, then lower p95.
- ``fastest``: the highest throughput within the cost budget (`--max-cost`, if given).
- ``lowest-latency``: the lowest p95 within the cost budget.
- ``knee``: the trial closest to the ideal point (best of every objective) once each
  objective is scaled to [0, 1] over the front: the balanced compromise.
Only platforms this machine can serve are eligible; a better trial on another platform (an
FPGA estimate) is reported, not silently dropped. When the study re-measured finalists, the
choice is among them: a trial measured once that ranks above them is reported, not chosen (the
one measurement that put it there is the luckiest of many; `tuner.study.finalists`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from tuner.errors import TunerError
from tuner.front.levels import comparable
from tuner.front.pareto import pareto_indices
from tuner.metrics import OBJECTIVE_DIRECTIONS, Metrics, directions_for
from tuner.record import TrialRecord

RankKey = Callable[[Metrics], tuple[float, ...]]

POLICIES: dict[str, tuple[str, RankKey | None]] = {
    "cheapest": ("lowest cost per million inferences meeting the p95 SLO, then highest throughput, then lowest p95",
                 lambda m: (m.cost_usd_per_million, -m.throughput_rps, m.latency_p95_ms)),
    "fastest": ("highest throughput within the cost budget, then lowest p95, then lowest cost",
                lambda m: (-m.throughput_rps, m.latency_p95_ms, m.cost_usd_per_million)),
    "lowest-latency": ("lowest p95 latency within the cost budget, then highest throughput, then lowest cost",
                       lambda m: (m.latency_p95_ms, -m.throughput_rps, m.cost_usd_per_million)),
    "knee": ("closest to the ideal point (best of every objective), objectives scaled to [0, 1] over the front",
             None),  # needs the whole front: see `_knee_distances`
}
DEFAULT_POLICY = "cheapest"
SERVABLE = frozenset({"cpu", "gpu"})  # what a deployment can run; FPGA trials are estimates only


@dataclass(frozen=True)
class Choice:
    trial: TrialRecord
    reason: str
    runners_up: list[TrialRecord] = field(default_factory=list)
    better_unservable: TrialRecord | None = None
    better_measured_once: TrialRecord | None = None  # ranks above the choice on one measurement


def _m(r: TrialRecord) -> Metrics:
    assert r.metrics is not None, "the front holds measured trials only"
    return r.metrics


def rank_key(policy: str) -> RankKey:
    """The sort key of a policy that ranks trials one by one (all but ``knee``)."""
    key = POLICIES[policy][1]
    assert key is not None, f"policy {policy!r} ranks the front as a whole"
    return key


def _knee_distances(front: Sequence[TrialRecord], objectives: Sequence[str]) -> dict[int, float]:
    scaled: dict[int, list[float]] = {r.number: [] for r in front}
    for k in objectives:
        vals = [getattr(_m(r), k) for r in front]
        lo, hi = min(vals), max(vals)
        for r in front:
            x = (getattr(_m(r), k) - lo) / (hi - lo) if hi > lo else 0.0
            scaled[r.number].append(1.0 - x if OBJECTIVE_DIRECTIONS[k] == "maximize" else x)
    return {n: math.sqrt(sum(v * v for v in vs)) for n, vs in scaled.items()}


def _platform(r: TrialRecord) -> str:
    return r.config.platform if r.config else "?"


def _within(records: Sequence[TrialRecord], slo_ms: float | None, max_cost: float | None) -> list[TrialRecord]:
    out = list(records)
    if slo_ms is not None:
        out = [r for r in out if _m(r).latency_p95_ms <= slo_ms]
    if max_cost is not None:
        out = [r for r in out if _m(r).cost_usd_per_million <= max_cost]
    return out


def _rank(records: Sequence[TrialRecord], policy: str, objectives: Sequence[str]) -> list[TrialRecord]:
    if policy == "knee":
        distance = _knee_distances(records, objectives)
        return sorted(records, key=lambda r: distance[r.number])
    key = rank_key(policy)
    return sorted(records, key=lambda r: key(_m(r)))


def measured_front(records: Sequence[TrialRecord], objectives: Sequence[str],
                   platforms: AbstractSet[str] | None = None, estimates: bool = False) -> list[TrialRecord]:
    """The Pareto front of the feasible, not reused trials on `platforms` (all if None), measured
    ones only unless `estimates`: what can be deployed, with no board estimate in front of it. One
    measurement level: served trials when there are any (`tuner.front.levels`)."""
    pool = [r for r in comparable(records) if r.feasible and r.metrics is not None and r.reused_from is None
            and (estimates or not r.metrics.estimated) and (platforms is None or _platform(r) in platforms)]
    points = [_m(r).objective_values(objectives) for r in pool]
    return [pool[i] for i in sorted(pareto_indices(points, directions_for(objectives)))]


def choose(records: Sequence[TrialRecord], policy: str, servable: AbstractSet[str], *, slo_ms: float | None = None,
           max_cost: float | None = None, objectives: Sequence[str] | None = None) -> Choice:
    """Pick by `policy` from the feasible Pareto trials among the platforms in `servable` (their
    own front: a servable trial dominated only by an estimate of a board nobody attached is still
    a candidate); a better-ranked trial of the study's front on another platform is reported."""
    if policy not in POLICIES:
        raise TunerError(f"Got {policy!r} for --policy. Known policies: {', '.join(POLICIES)}.")
    rule = POLICIES[policy][0]
    if slo_ms is None:  # say what was applied, not a limit nobody set
        rule = rule.replace(" meeting the p95 SLO", " (no p95 SLO set)")
    names = list(objectives or OBJECTIVE_DIRECTIONS)
    front = [r for r in records if r.pareto and r.feasible and r.metrics is not None]
    own = measured_front(records, names, servable, estimates=True)
    if not front and not own:
        raise TunerError(
            "The study has no feasible Pareto-optimal trial to promote (no COMPLETE trial meets the "
            "constraints). Run more trials (tuner tune ... --trials N), or relax the constraints in the "
            "search space file.")
    eligible = _within(own, slo_ms, max_cost)
    others = _within([r for r in front if _platform(r) not in servable], slo_ms, max_cost)
    if not eligible and not others:
        limits = " and ".join(x for x in (f"p95 <= {slo_ms} ms" if slo_ms is not None else "",
                                           f"cost <= ${max_cost}/M" if max_cost is not None else "") if x)
        raise TunerError(f"No feasible Pareto trial meets {limits}. Relax --slo-ms / --max-cost (tuner show lists the front).")
    if not eligible:
        raise TunerError(
            f"Every eligible Pareto trial runs on {sorted({_platform(r) for r in others})}, which this "
            f"machine cannot serve (servable: {sorted(servable)}). Pick a servable trial with --trial N (tuner show lists them).")
    ok = _rank(eligible, policy, names)
    repeated = [r for r in ok if r.remeasured is not None]
    best = repeated[0] if repeated else ok[0]
    once = ok[0] if ok[0] is not best else None
    ranked = _rank([best, *others], policy, names)
    better = ranked[0] if ranked[0] is not best else None
    limits = "".join([f", p95 <= {slo_ms} ms" if slo_ms is not None else "",
                      f", cost <= ${max_cost}/M" if max_cost is not None else ""])
    among = ", among the re-measured finalists" if repeated else ""
    return Choice(best, f"policy {policy!r}: {rule}{limits}{among}", [r for r in ok if r is not best][:3],
                  better, once)


def explicit(records: Sequence[TrialRecord], number: int, servable: AbstractSet[str]) -> Choice:
    """The trial the user named, checked to be complete and servable."""
    match = [r for r in records if r.number == number]
    if not match or match[0].metrics is None:
        done = [r.number for r in records if r.metrics is not None]
        raise TunerError(f"Got {number} for --trial. It is not a COMPLETE, measured trial of this study. "
                         f"Measured trials: {done}.")
    rec = match[0]
    if _platform(rec) not in servable:
        try:
            alt = choose(records, DEFAULT_POLICY, servable).trial
            assert alt.config is not None
            hint = (f"The best servable trial is #{alt.number} ({alt.config.platform} {alt.config.precision} "
                    f"b{alt.config.batch_size}): pass --trial {alt.number}.")
        except TunerError:
            hint = "No servable trial is feasible yet."
        raise TunerError(
            f"Trial #{number} runs on {_platform(rec)}, which cannot be served on this machine (its figures "
            f"are estimates from the cost model; no such device is attached). {hint}")
    return Choice(rec, f"trial #{number} chosen explicitly")
