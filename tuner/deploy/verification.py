"""Verify a deployment under the trial's load: drive the live endpoint as the trial's served
measurement did (same client, load mode, concurrency, instances per request, binary or JSON) and
time it with the same protocol (1 s untimed, warm-up, windows until the last ones agree), then
compare with the trial's figures.

The windows are the trial's: as long as its windows were (sized from the study's protocol), and in
server mode the same seeded Poisson arrivals in each (window k's seed is the same in a trial and
here). So the served p95 rests on as many requests as the trial's did, under the same arrival
pattern, and a difference between the two is the deployment's, not the luck of two samples
(about 100 requests at 10 req/s in 10 s put a p95 on its 5 slowest). `--verify-s` is the time
under load allowed beyond that: the limit is the larger of it and the protocol's own
(`max_measuring_s`).

It passes when no request fails, the served throughput is at least (1 - tolerance) of the
trial's and the served p95 at most (1 + tolerance) of it. `describe` is what promote prints.
Deploying and rolling back: `tuner.deploy.rollout`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.evaluators.served import ServedEvaluator
from tuner.models.spec import InputSpec
from tuner.record import TrialRecord
from tuner.spec.measurement import LoadSpec, MeasurementSettings

if TYPE_CHECKING:
    from serving.auth import BearerToken


@dataclass(frozen=True)
class Figures:
    """Throughput and latency percentiles of one configuration, measured one way."""

    throughput_rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    requests_ok: int | None = None


@dataclass(frozen=True)
class Verification:
    """Served figures (the live endpoint, driven like the trial) against the tuned ones."""

    passed: bool
    mode: str
    duration_s: float  # the most time under load: max(--verify-s, the protocol's max_measuring_s)
    tolerance: float
    served: Figures
    tuned: Figures
    throughput_ratio: float
    p95_ratio: float
    requests_failed: int
    errors_sample: tuple[str, ...] = ()
    tuned_level: str = "served"
    concurrency: int | None = None
    instances_per_request: int = 1
    windows: int = 0  # measuring windows the figures come from (the trial's protocol)
    stable: bool | None = None  # whether the last windows agreed within stable_pct
    measuring_s: float = 0.0  # time under load in those windows
    window_throughput_rps: tuple[float, ...] = ()  # every measuring window's, in order
    tuned_range_rps: tuple[float, float] | None = None  # [min, max] of the trial's re-measurements
    tuned_samples: int = 0  # how many re-measurements that range is of (0: measured once)
    tuned_range_p95_ms: tuple[float, float] | None = None  # the same for their p95
    served_p95_ci_ms: tuple[float, float] | None = None  # 99% distribution-free CI of the served p95


@dataclass(frozen=True)
class ClientPlan:
    """How the trial's served figures were measured, so verification drives the endpoint alike:
    requests in flight (offline), instances per request, binary tensors; `level` of the figures."""

    concurrency: int
    instances: int = 1
    binary: bool = True
    level: str = "served"

    @classmethod
    def of_trial(cls, measurement: dict[str, Any], config: TrialConfig, max_ongoing_requests: int,
                 level: str | None) -> ClientPlan:
        """From a trial's ``measurement`` attribute; a trial not measured served gets the served
        level's defaults (every request the replicas take at once, one instance each)."""
        default = ServedEvaluator().concurrency(config, max_ongoing_requests, None)
        return cls(int(measurement.get("concurrency") or default), int(measurement.get("instances_per_request") or 1),
                   bool(measurement.get("binary", True)), level or "engine")


WARMUP_S = 1.0  # untimed, as a served trial's: connections open, replicas' first batches


def verify(base_url: str, model_name: str, inputs: Sequence[InputSpec], trial: TrialRecord, plan: ClientPlan,
           load: LoadSpec, duration_s: float, tolerance: float,
           settings: MeasurementSettings | None = None, auth_token: BearerToken | None = None) -> Verification:
    """Drive the endpoint as the trial was driven (the same client, load mode, concurrency and
    request size) and time it as the trial was timed: 1 s untimed, then the study's protocol
    (`settings`: warm-up, the trial's windows until the last ones agree, figures from those) with
    at most max(`duration_s`, its `max_measuring_s`) under load. Compare the figures.
    `auth_token`: the endpoint's bearer token."""
    from tuner.evaluators.served import Endpoint, ServedBench
    from tuner.evaluators.windows import run_protocol

    if trial.metrics is None:
        raise TunerError(f"Trial #{trial.number} has no measurement to verify against. Promote a measured trial.")
    study_protocol = settings or MeasurementSettings()
    limit_s = max(duration_s, study_protocol.max_measuring_s)
    protocol = replace(study_protocol, max_measuring_s=limit_s)
    bench = ServedBench(plan.concurrency, plan.binary, auth_token=auth_token)
    try:
        bench.prepare("verify", Endpoint(base_url, model_name), tuple(inputs), plan.instances)
        if load.mode == "offline":
            bench.run_for(WARMUP_S, 1)
        else:
            assert load.target_rps is not None
            bench.serve_for(WARMUP_S, load.target_rps, 0.0, 0)
        bench.reset_failures()
        try:
            result = run_protocol(lambda method, args: [getattr(bench, method)(*(args[0] if isinstance(args, list)
                                                                                 else args))], protocol, load,
                                  probe=False)  # the deployment's own replicas are not this process's
        except (ValueError, ZeroDivisionError, IndexError):  # no request came back: nothing to time
            result = None
        _sent, failed, _kinds, errors = bench.failures()
    finally:
        bench.close()
    if result is None:
        served, details = Figures(0.0, math.inf, math.inf, math.inf, 0), {}
        failed = max(failed, 1)
    else:
        served, details = Figures(result.throughput_rps, result.latency_p50_ms, result.latency_p95_ms,
                                  result.latency_p99_ms, result.details.get("requests")), result.details
    m = trial.metrics
    tuned = Figures(m.throughput_rps, m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms)
    t_ratio = served.throughput_rps / tuned.throughput_rps if tuned.throughput_rps else 0.0
    p_ratio = served.latency_p95_ms / tuned.latency_p95_ms if tuned.latency_p95_ms else float("inf")
    passed = failed == 0 and t_ratio >= 1 - tolerance and p_ratio <= 1 + tolerance
    again = trial.remeasured
    tuned_range = again.spread.get("throughput_rps") if again is not None else None
    p95_range = again.spread.get("latency_p95_ms") if again is not None else None
    return Verification(passed, load.mode, limit_s, tolerance, served, tuned, t_ratio, p_ratio,
                        failed, tuple(errors), plan.level, plan.concurrency, plan.instances,
                        int(details.get("windows") or 0), bool(details.get("stable")),
                        float(details.get("measuring_s") or 0.0),
                        tuple(float(x) for x in details.get("window_throughput_rps") or ()),
                        _pair(tuned_range), again.samples if again is not None and tuned_range else 0,
                        _pair(p95_range), _pair(details.get("latency_p95_ci_ms")))


def _pair(value: Any) -> tuple[float, float] | None:
    """A [low, high] range (a list from JSON, or a tuple) as floats; None when there is none."""
    return (float(value[0]), float(value[1])) if value else None


def _placed(value: float, low: float, high: float, unit: str, what: str) -> str:
    """Where value lies against [low, high] ("within that range"); outside it, by how much (a rate that
    misses a range by 0.1 inf/s is not the same finding as one that misses it by half)."""
    edge = low if value < low else high
    gap = abs(value - edge)
    if low <= value <= high or round(gap, 2) == 0:  # a gap that prints as 0.00 is no finding
        return f"within {what}"
    share = f" ({gap / edge:.1%})" if edge else ""
    return f"{gap:,.2f} {unit}{share} {'below' if value < low else 'above'} {what}"


def describe(v: Verification) -> str:
    s, t = v.served, v.tuned
    how = (f"{v.concurrency} in flight, " if v.mode == "offline" else "") + f"{v.instances_per_request} instance(s) each"
    note = ("" if v.tuned_level == "served" else f"\n  note: the trial was measured at the {v.tuned_level} level, "
            "which leaves out the serving stack; tune with --measure served to compare like with like")
    how += f", {v.windows} windows in {v.measuring_s:.1f} s{'' if v.stable else ', not stable'}"
    if v.window_throughput_rps:
        how += f" ({min(v.window_throughput_rps):,.0f}-{max(v.window_throughput_rps):,.0f} inf/s per window)"
    if v.tuned_range_rps is not None:
        low, high = v.tuned_range_rps
        note += (f"\n  the trial's own {v.tuned_samples} re-measurements ranged {low:,.1f}-{high:,.1f} inf/s; "
                 f"the served figure is {_placed(v.served.throughput_rps, low, high, 'inf/s', 'that range')}")
        if v.tuned_range_p95_ms is not None:
            low, high = v.tuned_range_p95_ms
            note += (f"; their p95 {low:.2f}-{high:.2f} ms, the served p95 "
                     f"{_placed(v.served.latency_p95_ms, low, high, 'ms', 'it')}")
    if v.served_p95_ci_ms is not None and v.served.requests_ok:
        low, high = v.served_p95_ci_ms
        inside = low <= v.tuned.latency_p95_ms <= high
        note += (f"\n  the served p95 from {v.served.requests_ok:,} requests lies in {low:.2f}-{high:.2f} ms (99% "
                 f"confidence); the trial's p95 is {'inside' if inside else 'outside'} that interval"
                 + (": too few requests to tell the two p95s apart; a longer --verify-s narrows it"
                    if inside and not v.passed else ""))
    return (f"verification ({v.mode} load, {how}): served {s.throughput_rps:,.1f} inf/s, "
            f"p95 {s.latency_p95_ms:.2f} ms; tuned ({v.tuned_level}) {t.throughput_rps:,.1f} inf/s, "
            f"p95 {t.latency_p95_ms:.2f} ms; "
            f"ratio throughput {v.throughput_ratio:.2f}, p95 {v.p95_ratio:.2f} (tolerance {v.tolerance:.0%}); "
            f"{v.requests_failed} failed requests -> {'PASSED' if v.passed else 'FAILED'}"
            + (f"\n  first errors: {'; '.join(v.errors_sample[:3])}" if v.errors_sample else "") + note)

