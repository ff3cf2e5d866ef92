"""Is the live deployment still the right one? Pure: the promoted trial's measured figures,
the study's SLO, the other configurations of the study and one interval of live figures in;
a `Verdict` out.

The rules (`tuner watch`; thresholds are module constants, documented in the README):

- **overload**: the replicas serve more than the capacity the trial measured, or their
  in-flight requests reach `SATURATED_SHARE` of what they accept at once
  (``max_ongoing_requests`` x replicas) while they serve at least `SLOTS_MIN_SHARE` of that
  capacity, or Serve refuses requests
  (503: a full queue). Past capacity the served rate stops growing, so the demand itself
  cannot be seen; the busy request slots and the refusals say it is there.
- **accuracy**: with ``promote --shadow-fraction``, the replicas' top-1 agreement with fp32 on
  live traffic is below the study's accuracy floor (``accuracy_min_ratio``) with 95% confidence
  (the upper end of its Wilson interval is below the floor, over at least
  `FIDELITY_MIN_INSTANCES` compared instances): the fit is an fp32 configuration.
- **slo**: the live p95 (inside the replicas: a lower bound of the client's) is above the
  study's p95 SLO.
- **errors**: requests failed on the server's side (5xx, 408).
- **underused**: a configuration of the study that costs less per hour would serve the
  observed rate with `HEADROOM` to spare within the SLO. A single quiet interval proves
  little, so `tuner watch` reports it only after it held for ``--underused-s``.
- **ok** / **idle** otherwise (idle: no request in the interval).

The configuration that fits the observed load: among the study's feasible, servable, measured
trials (one measurement level, `tuner.front.levels`) meeting the SLO, those whose capacity
times `HEADROOM` covers the demand, the cheapest per hour; none covers it: the one with the
highest capacity. On an overload a configuration that serves no more than the promoted one
is named but not offered (the verdict's `fit` is None): switching to it would serve less.
Cost per hour = cost per million x throughput x 3600 / 1e6 (what the trial's
machines cost, busy or not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tuner.deploy.livemetrics import LiveFigures
from tuner.record import TrialRecord

#: A deployment with this share of its request slots busy is saturated.
SATURATED_SHARE = 0.9
#: ... while serving at least this share of its capacity: a gauge read at one instant can catch
#: every slot busy at a low rate, when a burst arrives together (seen at 3% of capacity).
SLOTS_MIN_SHARE = 0.5
#: A switch for less than this share of the hourly cost is not worth a verdict (the same machines
#: priced from two measurements differ by rounding).
CHEAPER_BY = 0.05
#: Fewer compared instances say too little about agreement with fp32 to call a drift.
FIDELITY_MIN_INSTANCES = 100
#: A configuration fits a load it serves at most at this share of its capacity.
HEADROOM = 0.7


@dataclass(frozen=True)
class Promoted:
    """The promoted trial as measured: what the live figures are compared with."""

    trial: TrialRecord
    capacity_rps: float  # inferences per second it sustained in its trial
    latency_p95_ms: float
    request_slots: int  # max_ongoing_requests x replicas: requests its replicas take at once
    level: str  # what the figures measure: served (through the stack) or engine (the ceiling)


@dataclass(frozen=True)
class Fidelity:
    """Live instances the replicas also ran through fp32, and how many agreed (top-1)."""

    compared: float = 0.0
    agreed: float = 0.0

    def __add__(self, other: Fidelity) -> Fidelity:
        return Fidelity(self.compared + other.compared, self.agreed + other.agreed)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared > 0 else None

    def upper_95(self) -> float:
        """The upper end of the 95% Wilson interval of the agreement (1.0 with nothing compared)."""
        n = self.compared
        if n <= 0:
            return 1.0
        p, z = self.agreed / n, 1.96
        centre = p + z * z / (2 * n)
        spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return min(1.0, (centre + spread) / (1 + z * z / n))


@dataclass(frozen=True)
class Verdict:
    """What `tuner watch` says about one interval.

    Attributes:
        kind: ok, idle, overload, accuracy, slo, errors or underused.
        message: one sentence with the figures.
        fit: the study's trial that fits the observed load; None when the promoted one does.
        demand_rps: the inferences per second the verdict reasoned with.
    """

    kind: str
    message: str
    fit: TrialRecord | None
    demand_rps: float

    @property
    def drift(self) -> bool:
        return self.kind not in ("ok", "idle")


def cost_per_hour_usd(r: TrialRecord) -> float:
    m = r.metrics
    assert m is not None
    return m.cost_usd_per_million * m.throughput_rps * 3600 / 1e6


def label(r: TrialRecord) -> str:
    c, m = r.config, r.metrics
    assert c is not None and m is not None
    return (f"#{r.number} ({c.platform} {c.precision} b{c.batch_size} {c.replicas}x{c.threads_per_replica}t: "
            f"{m.throughput_rps:,.0f} inf/s, p95 {m.latency_p95_ms:.2f} ms, ${cost_per_hour_usd(r):.4f}/h)")


def fitting(candidates: Sequence[TrialRecord], demand_rps: float, slo_ms: float | None) -> TrialRecord | None:
    """The cheapest per hour of `candidates` within the SLO that serves `demand_rps` with
    `HEADROOM`; if none does, the one with the highest capacity; None without candidates."""
    pool = [r for r in candidates if r.metrics is not None
            and (slo_ms is None or r.metrics.latency_p95_ms <= slo_ms)]
    if not pool:
        return None
    enough = [r for r in pool if r.metrics is not None and r.metrics.throughput_rps * HEADROOM >= demand_rps]
    if enough:
        return min(enough, key=lambda r: (cost_per_hour_usd(r), -r.metrics.throughput_rps if r.metrics else 0))
    return max(pool, key=lambda r: r.metrics.throughput_rps if r.metrics else 0.0)


def judge(live: LiveFigures, promoted: Promoted, candidates: Sequence[TrialRecord],
          slo_ms: float | None, fidelity: Fidelity | None = None, accuracy_floor: float | None = None) -> Verdict:
    """The verdict on one interval (see the module docstring for the rules)."""
    cap = promoted.capacity_rps
    share = live.inferences_per_s / cap if cap > 0 else 0.0
    slots = live.ongoing_requests / promoted.request_slots if promoted.request_slots else 0.0
    refused = "503" in live.error_statuses
    others = [r for r in candidates if r.number != promoted.trial.number]
    where = (f"{live.inferences_per_s:,.0f} inf/s = {share:.0%} of the {cap:,.0f} inf/s trial "
             f"#{promoted.trial.number} measured ({promoted.level})")
    if share > 1.0 or (slots >= SATURATED_SHARE and share >= SLOTS_MIN_SHARE) or refused:
        # Saturated: the demand is at least what is served, and more when requests are refused.
        demand = max(live.inferences_per_s, cap) + (live.errors_per_s if refused else 0.0)
        fit = fitting(others, demand, slo_ms)
        advice = _advice(fit, promoted)
        if fit is not None and not _serves_more(fit, promoted):
            fit = None  # named in the advice, but switching to it would serve less: nothing to apply
        why = []
        why.append(where)
        if slots >= SATURATED_SHARE:
            why.append(f"{live.ongoing_requests:.0f} of {promoted.request_slots} request slots busy")
        if refused:
            why.append(f"{live.errors_per_s:,.1f} req/s refused (503: queue full)")
        return Verdict("overload", "OVERLOAD: " + "; ".join(why) + advice, fit, demand)
    if fidelity is not None and accuracy_floor is not None and fidelity.compared >= FIDELITY_MIN_INSTANCES \
            and fidelity.upper_95() < accuracy_floor:
        exact = [r for r in others if r.config is not None and r.config.precision == "fp32"]
        fit = fitting(exact, max(live.inferences_per_s, 1.0), slo_ms)
        return Verdict("accuracy", f"ACCURACY: top-1 agreement with fp32 on live traffic {fidelity.agreement:.4f} "
                                   f"({fidelity.agreed:.0f} of {fidelity.compared:.0f} shadowed instances; at most "
                                   f"{fidelity.upper_95():.4f} at 95% confidence), below the study's floor of "
                                   f"{accuracy_floor:g}" + (f"; fp32 trial {label(fit)} serves this load" if fit else
                                                            "; the study has no fp32 configuration to switch to"),
                       fit, live.inferences_per_s)
    if live.latency_p95_ms is not None and slo_ms is not None and live.latency_p95_ms > slo_ms:
        fit = fitting(others, max(live.inferences_per_s, 1.0), slo_ms)
        return Verdict("slo", f"SLO: p95 {live.latency_p95_ms:.2f} ms inside the replicas, above the SLO of "
                              f"{slo_ms:g} ms, at {where}" + _advice(fit, promoted), fit, live.inferences_per_s)
    if live.errors_per_s > 0:
        return Verdict("errors", f"ERRORS: {live.errors_per_s:,.2f} req/s failed (HTTP {', '.join(live.error_statuses)}) "
                                 f"at {where}", None, live.inferences_per_s)
    if live.idle:
        return Verdict("idle", "idle: no request in the interval", None, 0.0)
    cheaper = fitting(others, live.inferences_per_s, slo_ms)
    if cheaper is not None and cheaper.metrics is not None \
            and cheaper.metrics.throughput_rps * HEADROOM >= live.inferences_per_s \
            and cost_per_hour_usd(cheaper) < (1 - CHEAPER_BY) * cost_per_hour_usd(promoted.trial):
        return Verdict("underused", f"UNDERUSED: {where}; trial {label(cheaper)} serves it with "
                                    f"{1 - HEADROOM:.0%} headroom for less", cheaper, live.inferences_per_s)
    return Verdict("ok", f"ok: {where}", None, live.inferences_per_s)


def _serves_more(fit: TrialRecord, promoted: Promoted) -> bool:
    """`fit` was measured to serve more than the promoted trial's capacity."""
    return fit.metrics is not None and fit.metrics.throughput_rps > promoted.capacity_rps


def _advice(fit: TrialRecord | None, promoted: Promoted) -> str:
    if fit is None:
        return "; no other configuration of the study meets the SLO"
    assert fit.metrics is not None
    if not _serves_more(fit, promoted):
        return f"; no configuration of the study serves more (the fastest is {label(fit)})"
    return f"; trial {label(fit)} fits this load"
