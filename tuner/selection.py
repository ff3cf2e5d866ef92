"""Choose one trial to deploy from the feasible Pareto front. Pure: records in, choice out.

Default policy ``cheapest``: the lowest cost per million inferences; ties go to the higher
throughput, then the lower p95 latency. Only platforms this machine can serve are eligible;
a better trial on another platform (an FPGA estimate) is reported, not silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tuner.errors import TunerError

Record = dict[str, Any]

POLICIES: dict[str, tuple[str, Callable[[Record], tuple]]] = {
    "cheapest": (
        "lowest cost per million inferences, then highest throughput, then lowest p95",
        lambda r: (r["metrics"]["cost_usd_per_million"], -r["metrics"]["throughput_rps"], r["metrics"]["latency_p95_ms"]),
    ),
    "fastest": (
        "highest throughput, then lowest p95, then lowest cost",
        lambda r: (-r["metrics"]["throughput_rps"], r["metrics"]["latency_p95_ms"], r["metrics"]["cost_usd_per_million"]),
    ),
    "lowest-latency": (
        "lowest p95 latency, then highest throughput, then lowest cost",
        lambda r: (r["metrics"]["latency_p95_ms"], -r["metrics"]["throughput_rps"], r["metrics"]["cost_usd_per_million"]),
    ),
}
DEFAULT_POLICY = "cheapest"


@dataclass(frozen=True)
class Choice:
    trial: Record
    reason: str
    runners_up: list[Record] = field(default_factory=list)
    better_unservable: Record | None = None


def choose(records: list[Record], policy: str, servable: set[str]) -> Choice:
    """Pick from the feasible Pareto trials by `policy`, among platforms in `servable`."""
    if policy not in POLICIES:
        raise TunerError(f"Got {policy!r} for --policy. Known policies: {', '.join(POLICIES)}.")
    rule, key = POLICIES[policy]
    front = sorted((r for r in records if r["pareto"] and r["feasible"]), key=key)
    if not front:
        raise TunerError(
            "The study has no feasible Pareto-optimal trial to promote (no COMPLETE trial meets "
            "the constraints). Run more trials (tuner tune ... --trials N), or relax the "
            "constraints in the search space file."
        )
    ok = [r for r in front if r["config"]["platform"] in servable]
    if not ok:
        raise TunerError(
            f"Every feasible Pareto trial runs on {sorted({r['config']['platform'] for r in front})}, "
            f"which this machine cannot serve (servable: {sorted(servable)}). Pick a servable "
            "trial with --trial N (tuner show lists them)."
        )
    best = ok[0]
    better = front[0] if front[0] is not best else None
    return Choice(best, f"policy {policy!r}: {rule}", ok[1:4], better)


def explicit(records: list[Record], number: int, servable: set[str]) -> Choice:
    """The trial the user named, checked to be complete and servable."""
    match = [r for r in records if r["number"] == number]
    if not match or match[0]["metrics"] is None:
        done = [r["number"] for r in records if r["metrics"] is not None]
        raise TunerError(f"Got {number} for --trial. It is not a COMPLETE trial of this study. Complete trials: {done}.")
    rec = match[0]
    if rec["config"]["platform"] not in servable:
        try:
            alt = choose(records, DEFAULT_POLICY, servable).trial
            hint = f"The best servable trial is #{alt['number']} ({alt['config']['platform']} {alt['config']['precision']} b{alt['config']['batch_size']}): pass --trial {alt['number']}."
        except TunerError:
            hint = "No servable trial is feasible yet."
        raise TunerError(
            f"Trial #{number} runs on {rec['config']['platform']}, which cannot be served on this "
            f"machine (its figures are estimates from the cost model; no such device is attached). {hint}"
        )
    return Choice(rec, f"trial #{number} chosen explicitly")
