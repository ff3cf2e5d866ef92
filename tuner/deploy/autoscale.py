"""Ray Serve autoscaling derived from a trial's measurement (`tuner promote --traffic-rps LOW:HIGH`).

The rule (pure; numbers in, numbers out):

- per-replica capacity = the trial's throughput / its replicas, in inferences per second (the
  unit of ``throughput_rps`` and of ``--traffic-rps``). A served trial's figure is what a replica
  gives through the Serve app at the trial's p95; an engine-level figure leaves out the serving
  stack, so it is an upper bound and the plan says so.
- each replica is planned at 1 / HEADROOM (80%) of that capacity: the trial's figures are at
  its measured load (offline: a saturating closed loop), where latency climbs steeply with any
  more load (queueing), and the autoscaler needs seconds (upscale delay + a replica's start)
  while traffic may still be climbing.
- ``min_replicas`` = ceil(LOW / planned), ``max_replicas`` = ceil(HIGH / planned), at most the
  replicas the cluster's CPUs hold (each takes `cpus_per_replica`); above that the plan is
  capped and says which rate the cap serves. ``initial_replicas`` = the trial's replicas (within
  those bounds), so the post-deploy verification, which drives the trial's load, starts on the
  replicas the trial was measured with.
- ``target_ongoing_requests`` = the requests in flight per replica at the measured throughput
  and p95, / HEADROOM: offline, the client's concurrency / replicas; server mode, Little's law
  (requests/s x p50 latency, the nearest recorded figure to the mean) / replicas. At most
  ``max_ongoing_requests`` count (a replica takes no more at once), so the target stays below
  what a saturated replica reports and upscaling can trigger.
- reaction: replicas report every METRICS_INTERVAL_S, averaged over LOOK_BACK_PERIOD_S; Serve
  adds replicas after ``upscale_delay_s`` over target (default 3 s) and removes them after
  ``downscale_delay_s`` under it (default 60 s: a dip of seconds must not stop a replica that
  is needed again at once, whose restart costs seconds of CPU on the serving cores; Ray's own
  default holds idle replicas for 600 s).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.errors import TunerError, field_error
from tuner.evaluators.served import ServedEvaluator
from tuner.record import TrialRecord

HEADROOM = 1.25  # planned load per replica = measured capacity / HEADROOM (80%)
METRICS_INTERVAL_S = 1.0  # how often a replica reports its ongoing requests (Ray's default: 10 s)
LOOK_BACK_PERIOD_S = 5.0  # the window they are averaged over (Ray's default: 30 s)
UPSCALE_DELAY_S = 3.0
DOWNSCALE_DELAY_S = 60.0
FLAG = "--traffic-rps"


def this_machine_cpus() -> int:
    """The cores this process may use: those tuner's local serving cluster serves on (it declares
    twice as many Ray CPUs, room for a rolling update's second set, not more capacity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Traffic:
    """The traffic the deployment must serve, inferences per second, and how fast it reacts."""

    low_rps: float
    high_rps: float
    upscale_delay_s: float = UPSCALE_DELAY_S
    downscale_delay_s: float = DOWNSCALE_DELAY_S

    @property
    def text(self) -> str:
        return f"{self.low_rps:g}:{self.high_rps:g}"


def parse_traffic(text: str | None, upscale_delay_s: float | None = None, downscale_delay_s: float | None = None,
                  cluster_cpus: int | None = None) -> Traffic | None:
    """``LOW:HIGH`` (e.g. "50:400") as a `Traffic` (None: no ``--traffic-rps``, a fixed replica
    count); a TunerError naming the flag otherwise. The delays default to UPSCALE_DELAY_S and
    DOWNSCALE_DELAY_S; they and `cluster_cpus` are only taken with a traffic range."""
    if text is None:
        options = {"--upscale-delay-s": upscale_delay_s, "--downscale-delay-s": downscale_delay_s,
                   "--cluster-cpus": cluster_cpus}
        for name, value in options.items():
            if value is not None:
                raise field_error(name, value, f"It sets how the deployment autoscales, which only {FLAG} asks for.",
                                  f"Add {FLAG} LOW:HIGH, or drop {name}.")
        return None
    rule = (f"{FLAG} takes LOW:HIGH, the lowest and highest traffic in inferences per second, two positive "
            "numbers with LOW <= HIGH.")
    fix = f"Pass e.g. {FLAG} 50:400."
    parts = str(text).split(":")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high)):
        raise field_error(FLAG, text, rule, fix)
    if low <= 0 or high <= 0:
        raise field_error(FLAG, text, f"{rule} Both must be > 0 (min_replicas is at least 1).", fix)
    if low > high:
        raise field_error(FLAG, text, f"{rule} LOW {low:g} is above HIGH {high:g}.",
                          f"Swap them: {FLAG} {high:g}:{low:g}.")
    up = UPSCALE_DELAY_S if upscale_delay_s is None else upscale_delay_s
    down = DOWNSCALE_DELAY_S if downscale_delay_s is None else downscale_delay_s
    for name, value in (("--upscale-delay-s", up), ("--downscale-delay-s", down)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise field_error(name, value, "It must be a number of seconds >= 0.", "Pass e.g. 3 (up) or 60 (down).")
    if cluster_cpus is not None and (isinstance(cluster_cpus, bool) or not isinstance(cluster_cpus, int)
                                     or cluster_cpus < 1):
        raise field_error("--cluster-cpus", cluster_cpus, "It must be an integer >= 1.",
                          "Pass the CPUs of the cluster the deployment runs on, or leave it out for this machine's.")
    return Traffic(low, high, float(up), float(down))


@dataclass(frozen=True)
class Capacity:
    """What one replica of a trial was measured to serve.

    Attributes:
        trial: the trial's number.
        per_replica_rps: throughput / replicas, inferences per second.
        in_flight_per_replica: requests in flight per replica at that throughput and p95.
        replicas: the trial's replicas.
        cpus_per_replica: Ray CPUs each replica takes.
        level: "served" or "engine" (an upper bound of what serving gives).
        basis: how the two figures were derived, for the printed plan.
    """

    trial: int
    per_replica_rps: float
    in_flight_per_replica: float
    replicas: int
    cpus_per_replica: int
    level: str
    basis: str


def capacity_of(trial: TrialRecord, measurement: Mapping[str, Any], max_ongoing_requests: int,
                cpus_per_replica: int) -> Capacity:
    """`trial`'s per-replica capacity from its metrics and its ``measurement`` user attribute."""
    m, config = trial.metrics, trial.config
    if m is None or config is None or not m.throughput_rps > 0 or trial.level not in ("served", "engine"):
        raise TunerError(f"Trial #{trial.number} has no measured throughput ({trial.level or 'no'} level) to derive "
                         f"autoscaling from. Promote a measured cpu or gpu trial, or drop {FLAG}.")
    replicas = config.replicas
    per_replica = m.throughput_rps / replicas
    instances = int(measurement.get("instances_per_request") or 1)
    if measurement.get("mode") == "server":
        requests_rps = m.throughput_rps / instances
        in_flight = requests_rps * m.latency_p50_ms / 1000 / replicas
        how = (f"server mode: Little's law, {requests_rps:.1f} req/s x p50 {m.latency_p50_ms:.2f} ms / "
               f"{replicas} replica(s)")
    else:
        given = measurement.get("concurrency")
        concurrency = ServedEvaluator().concurrency(config, max_ongoing_requests, int(given) if given else None)
        in_flight = concurrency / replicas
        how = (f"offline: {concurrency} request(s) in flight / {replicas} replica(s)"
               + ("" if given else " (the served level's default concurrency)"))
    if in_flight > max_ongoing_requests:
        how += f", counted up to max_ongoing_requests {max_ongoing_requests}"
        in_flight = float(max_ongoing_requests)
    level = ("served throughput" if trial.level == "served" else
             "ENGINE-level throughput (ONNX Runtime alone, an upper bound of what serving gives; "
             "tune with --measure served for a served figure)")
    basis = (f"trial #{trial.number}'s {level} {m.throughput_rps:,.1f} inf/s / {replicas} replica(s) at p95 "
             f"{m.latency_p95_ms:.2f} ms; {in_flight:.2f} request(s) in flight per replica ({how})")
    return Capacity(trial.number, per_replica, in_flight, replicas, cpus_per_replica, trial.level, basis)


@dataclass(frozen=True)
class AutoscalePlan:
    """A deployment's Ray Serve ``autoscaling_config``, with how it was derived (`describe`)."""

    traffic: Traffic
    capacity: Capacity
    cluster_cpus: int
    min_replicas: int
    max_replicas: int
    initial_replicas: int
    target_ongoing_requests: float
    planned_rps_per_replica: float
    needed_max_replicas: int  # what HIGH needs; above max_replicas when capped
    headroom: float = HEADROOM
    metrics_interval_s: float = METRICS_INTERVAL_S
    look_back_period_s: float = LOOK_BACK_PERIOD_S

    @property
    def capped(self) -> bool:
        return self.needed_max_replicas > self.max_replicas

    @property
    def max_served_rps(self) -> float:
        """What max_replicas serve at the planned load per replica."""
        return self.max_replicas * self.planned_rps_per_replica

    def serve_config(self) -> dict[str, Any]:
        """The deployment's ``autoscaling_config`` (Ray Serve 2.60's AutoscalingConfig keys)."""
        return {"min_replicas": self.min_replicas, "initial_replicas": self.initial_replicas,
                "max_replicas": self.max_replicas, "target_ongoing_requests": self.target_ongoing_requests,
                "metrics_interval_s": self.metrics_interval_s, "look_back_period_s": self.look_back_period_s,
                "upscale_delay_s": self.traffic.upscale_delay_s, "downscale_delay_s": self.traffic.downscale_delay_s}

    def warning(self) -> str | None:
        """The capped warning, or None when HIGH fits the cluster."""
        if not self.capped:
            return None
        c = self.capacity
        return (f"WARNING: HIGH {self.traffic.high_rps:g} inf/s needs {self.needed_max_replicas} replicas, but "
                f"{self.cluster_cpus} CPU(s) hold {self.max_replicas} replica(s) of {c.cpus_per_replica} CPU(s): max_replicas "
                f"{self.max_replicas} serves {self.max_served_rps:,.1f} inf/s at the planned {1 / self.headroom:.0%} "
                f"({self.max_replicas * c.per_replica_rps:,.1f} at measured capacity). Add CPUs (--cluster-cpus "
                f"for a bigger cluster) or promote a faster trial.")

    def describe(self) -> str:
        """How every number was derived, one line each (printed, and the YAML header)."""
        c, t, planned = self.capacity, self.traffic, self.planned_rps_per_replica
        lines = [
            f"autoscaling ({FLAG} {t.text}): per replica {c.per_replica_rps:,.1f} inf/s = {c.basis}",
            f"  planned at {1 / self.headroom:.0%} of it (headroom x{self.headroom:g}): {planned:,.1f} inf/s per replica",
            f"  min_replicas {self.min_replicas} = ceil({t.low_rps:g} / {planned:,.1f}); max_replicas "
            f"{self.max_replicas} (HIGH: ceil({t.high_rps:g} / {planned:,.1f}) = {self.needed_max_replicas}; "
            f"{self.cluster_cpus} CPU(s) hold {self.cluster_cpus // c.cpus_per_replica}); initial_replicas "
            f"{self.initial_replicas} (the trial's {c.replicas}, so verification starts on what was measured)",
            f"  target_ongoing_requests {self.target_ongoing_requests:g} = {c.in_flight_per_replica:.2f} in flight "
            f"per replica when measured / {self.headroom:g}",
            f"  up after {t.upscale_delay_s:g} s over target, down after {t.downscale_delay_s:g} s under it "
            f"(replicas report every {self.metrics_interval_s:g} s, averaged over {self.look_back_period_s:g} s)",
        ]
        warning = self.warning()
        return "\n".join(lines + ([f"  {warning}"] if warning else []))


def plan_autoscaling(capacity: Capacity, traffic: Traffic, cluster_cpus: int, headroom: float = HEADROOM
                     ) -> AutoscalePlan:
    """The autoscaling plan for `traffic` on a cluster of `cluster_cpus` CPUs (rule: module doc).

    Raises:
        TunerError: not even LOW fits the cluster, or an argument breaks a rule.
    """
    if not headroom >= 1:
        raise field_error("headroom", headroom, "It must be >= 1 (1: plan replicas at their measured capacity).",
                          f"Pass e.g. {HEADROOM}.")
    fit = cluster_cpus // capacity.cpus_per_replica
    if fit < 1:
        raise field_error("--cluster-cpus", cluster_cpus, f"One replica takes {capacity.cpus_per_replica} CPU(s).",
                          "Pass the CPUs of the cluster the deployment runs on.")
    planned = capacity.per_replica_rps / headroom

    def replicas_for(rps: float) -> int:
        return max(1, math.ceil(rps / planned - 1e-9))

    low, high = replicas_for(traffic.low_rps), replicas_for(traffic.high_rps)
    if low > fit:
        raise field_error(FLAG, traffic.text, f"LOW {traffic.low_rps:g} inf/s needs {low} replicas at "
                          f"{planned:,.1f} inf/s each ({1 / headroom:.0%} of trial #{capacity.trial}'s measured per-replica "
                          f"capacity), but {cluster_cpus} CPU(s) hold {fit} replica(s) of {capacity.cpus_per_replica} "
                          f"CPU(s), which serve {fit * planned:,.1f} inf/s.",
                          "Lower LOW, pass --cluster-cpus for a bigger cluster, or promote a faster trial.")
    top = max(min(high, fit), min(capacity.replicas, fit))  # room to start on the trial's replicas
    initial = min(max(capacity.replicas, low), top)
    target = max(round(capacity.in_flight_per_replica / headroom, 3), 0.001)  # Ray: > 0
    return AutoscalePlan(traffic, capacity, cluster_cpus, low, top, initial, target, planned, high, headroom)
