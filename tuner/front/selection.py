"""Choose one trial to deploy from the feasible Pareto front. Pure: records in, choice out.

Policies (`tuner promote --policy`):
- ``cheapest`` (default): the lowest cost per million inferences among trials meeting the p95
  SLO (the study's, or `--slo-ms`); ties: higher throughput, then lower p95.
- ``fastest``: the highest throughput within the cost budget (`--max-cost`, if given).
- ``lowest-latency``: the lowest p95 within the cost budget.
- ``knee``: the trial closest to the ideal point (best of every objective) once each
  objective is scaled to [0, 1] over the front: the balanced compromise.
Only platforms this machine can serve are eligible; a better trial on another platform (an
FPGA estimate) is reported, not silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from tuner.errors import TunerError
from tuner.metrics import OBJECTIVE_DIRECTIONS

Record = dict[str, Any]


def _m(r: Record, k: str) -> float:
    return r["metrics"][k]


POLICIES: dict[str, tuple[str, Callable[[Record], tuple]]] = {
    "cheapest": ("lowest cost per million inferences meeting the p95 SLO, then highest throughput, then lowest p95",
                 lambda r: (_m(r, "cost_usd_per_million"), -_m(r, "throughput_rps"), _m(r, "latency_p95_ms"))),
    "fastest": ("highest throughput within the cost budget, then lowest p95, then lowest cost",
                lambda r: (-_m(r, "throughput_rps"), _m(r, "latency_p95_ms"), _m(r, "cost_usd_per_million"))),
    "lowest-latency": ("lowest p95 latency within the cost budget, then highest throughput, then lowest cost",
                       lambda r: (_m(r, "latency_p95_ms"), -_m(r, "throughput_rps"), _m(r, "cost_usd_per_million"))),
    "knee": ("closest to the ideal point (best of every objective), objectives scaled to [0, 1] over the front",
             lambda r: (r["_knee"],)),
}
DEFAULT_POLICY = "cheapest"


@dataclass(frozen=True)
class Choice:
    trial: Record
    reason: str
    runners_up: list[Record] = field(default_factory=list)
    better_unservable: Record | None = None


def _knee_distances(front: list[Record], objectives: list[str]) -> None:
    for k in objectives:
        vals = [_m(r, k) for r in front]
        lo, hi = min(vals), max(vals)
        for r in front:
            x = (_m(r, k) - lo) / (hi - lo) if hi > lo else 0.0
            r.setdefault("_scaled", {})[k] = 1.0 - x if OBJECTIVE_DIRECTIONS[k] == "maximize" else x
    for r in front:
        r["_knee"] = math.sqrt(sum(v * v for v in r.pop("_scaled").values()))


def choose(records: list[Record], policy: str, servable: set[str], *, slo_ms: float | None = None,
           max_cost: float | None = None, objectives: list[str] | None = None) -> Choice:
    """Pick from the feasible Pareto trials by `policy`, among platforms in `servable`."""
    if policy not in POLICIES:
        raise TunerError(f"Got {policy!r} for --policy. Known policies: {', '.join(POLICIES)}.")
    rule, key = POLICIES[policy]
    front = [dict(r) for r in records if r["pareto"] and r["feasible"]]
    if not front:
        raise TunerError(
            "The study has no feasible Pareto-optimal trial to promote (no COMPLETE trial meets the "
            "constraints). Run more trials (tuner tune ... --trials N), or relax the constraints in the "
            "search space file.")
    eligible = front
    if slo_ms is not None:
        eligible = [r for r in eligible if _m(r, "latency_p95_ms") <= slo_ms]
    if max_cost is not None:
        eligible = [r for r in eligible if _m(r, "cost_usd_per_million") <= max_cost]
    if not eligible:
        limits = " and ".join(x for x in (f"p95 <= {slo_ms} ms" if slo_ms is not None else "",
                                           f"cost <= ${max_cost}/M" if max_cost is not None else "") if x)
        raise TunerError(f"No feasible Pareto trial meets {limits}. Relax --slo-ms / --max-cost (tuner show lists the front).")
    if policy == "knee":
        _knee_distances(eligible, objectives or list(OBJECTIVE_DIRECTIONS))
    ranked = sorted(eligible, key=key)
    ok = [r for r in ranked if r["config"]["platform"] in servable]
    if not ok:
        raise TunerError(
            f"Every eligible Pareto trial runs on {sorted({r['config']['platform'] for r in ranked})}, which this "
            f"machine cannot serve (servable: {sorted(servable)}). Pick a servable trial with --trial N (tuner show lists them).")
    best = ok[0]
    better = ranked[0] if ranked[0] is not best else None
    limits = "".join([f", p95 <= {slo_ms} ms" if slo_ms is not None else "",
                      f", cost <= ${max_cost}/M" if max_cost is not None else ""])
    return Choice(best, f"policy {policy!r}: {rule}{limits}", ok[1:4], better)


def explicit(records: list[Record], number: int, servable: set[str]) -> Choice:
    """The trial the user named, checked to be complete and servable."""
    match = [r for r in records if r["number"] == number]
    if not match or match[0]["metrics"] is None:
        done = [r["number"] for r in records if r["metrics"] is not None]
        raise TunerError(f"Got {number} for --trial. It is not a COMPLETE, measured trial of this study. Measured trials: {done}.")
    rec = match[0]
    if rec["config"]["platform"] not in servable:
        try:
            alt = choose(records, DEFAULT_POLICY, servable).trial
            hint = (f"The best servable trial is #{alt['number']} ({alt['config']['platform']} {alt['config']['precision']} "
                    f"b{alt['config']['batch_size']}): pass --trial {alt['number']}.")
        except TunerError:
            hint = "No servable trial is feasible yet."
        raise TunerError(
            f"Trial #{number} runs on {rec['config']['platform']}, which cannot be served on this machine (its figures "
            f"are estimates from the cost model; no such device is attached). {hint}")
    return Choice(rec, f"trial #{number} chosen explicitly")
