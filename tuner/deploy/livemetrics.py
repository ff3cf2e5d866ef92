"""What a live deployment is doing, read from Ray's Prometheus endpoint: two scrapes a few
seconds apart become one `LiveFigures` (rates over the interval, latency percentiles of the
requests answered in it, the in-flight requests at its end).

Where the figures come from (Ray 2.60; every name gets Ray's ``ray_`` prefix):

- inferences and requests per second: the replicas' own counters (`serving.metrics`):
  ``ray_tuner_infer_instances_total`` (instances run) and ``ray_tuner_infer_requests_total``
  (requests answered, by status);
- errors: those counters' non-2xx statuses other than 4xx client errors (a 400 or 401 is the
  client's fault, not the deployment's), plus Ray Serve's own ``ray_serve_num_http_requests_total``
  5xx answers that never reached our code (503 when a replica's queue is full);
- latency: Ray Serve's ``ray_serve_http_request_latency_ms`` at the replica's HTTP ingress (the
  fast path has no separate proxy), else our ``ray_tuner_infer_request_latency_ms``. Both are
  measured inside the replica: the time on the wire and in HAProxy is not in them, so they are
  a lower bound of what a client sees. Percentiles are interpolated in the histogram's buckets
  (as Prometheus' ``histogram_quantile`` does), so they are as coarse as the buckets;
- in flight: ``ray_serve_replica_processing_queries`` summed over the application's replicas;
- fidelity to fp32 on live traffic (``promote --shadow-fraction``): instances the replicas also
  ran through the fp32 model, ``ray_tuner_infer_shadow_instances_total``, and those whose top-1
  agreed, ``ray_tuner_infer_shadow_agreed_total``.

Only series of the watched application count (label ``application``). Ray exports every
``metrics_report_interval_ms`` (tuner's serving cluster: 2 s; Ray's default 10 s), so a rate
needs scrapes at least that far apart. tuner's serving cluster gives Serve's latency histogram
buckets at most ~1.5x apart (`serving.metrics.LATENCY_BOUNDARIES_MS`; Ray's default has 5, 10,
20, 50 ms), so an interpolated p95 is within a bucket's width of the true one.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from tuner.errors import TunerError

INSTANCES = "ray_tuner_infer_instances_total"
REQUESTS = "ray_tuner_infer_requests_total"
SERVE_REQUESTS = "ray_serve_num_http_requests_total"
LATENCY = "ray_serve_http_request_latency_ms_bucket"
OWN_LATENCY = "ray_tuner_infer_request_latency_ms_bucket"
ONGOING = "ray_serve_replica_processing_queries"
SHADOW = "ray_tuner_infer_shadow_instances_total"
SHADOW_AGREED = "ray_tuner_infer_shadow_agreed_total"
WANTED = (INSTANCES, REQUESTS, SERVE_REQUESTS, LATENCY, OWN_LATENCY, ONGOING, SHADOW, SHADOW_AGREED)


@dataclass(frozen=True)
class Scrape:
    """One read of the endpoint: each wanted series' value, summed over the labels that do not
    matter (replica, node), at `at_s` (monotonic seconds)."""

    at_s: float
    counters: dict[tuple[str, str], float] = field(default_factory=dict)  # (name, status) -> value
    buckets: dict[tuple[str, float], float] = field(default_factory=dict)  # (name, le) -> cumulative count
    ongoing: float = 0.0


@dataclass(frozen=True)
class LiveFigures:
    """The deployment over one interval (`interval_s`), as its replicas counted it."""

    interval_s: float
    inferences_per_s: float
    requests_per_s: float
    errors_per_s: float
    error_statuses: tuple[str, ...]
    latency_p50_ms: float | None  # None: no request answered in the interval
    latency_p95_ms: float | None
    ongoing_requests: float
    shadow_instances: float = 0.0  # instances also run through fp32 in the interval
    shadow_agreed: float = 0.0  # ... whose top-1 agreed with fp32's

    @property
    def idle(self) -> bool:
        return self.requests_per_s == 0 and self.errors_per_s == 0


def parse(text: str, application: str, at_s: float) -> Scrape:
    """The wanted series of `application` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, float], float] = defaultdict(float)
    ongoing = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in WANTED or sample.labels.get("application") != application \
                    or sample.labels.get("route", "").startswith("/-/"):  # Serve's own health checks
                continue
            if sample.name in (INSTANCES, SHADOW, SHADOW_AGREED):
                counters[(sample.name, "")] += sample.value
            elif sample.name == REQUESTS:
                counters[(sample.name, sample.labels.get("status", ""))] += sample.value
            elif sample.name == SERVE_REQUESTS:
                counters[(sample.name, sample.labels.get("status_code", ""))] += sample.value
            elif sample.name == ONGOING:
                ongoing += sample.value
            else:
                buckets[(sample.name, float(sample.labels.get("le", "inf")))] += sample.value
    return Scrape(at_s, dict(counters), dict(buckets), ongoing)


def scrape(url: str, application: str, at_s: float, timeout_s: float = 5.0) -> Scrape:
    """Read Ray's metrics endpoint `url` (http://HOST:PORT/metrics).

    Raises:
        TunerError: the endpoint cannot be read (named, with the fix).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http only, the user's cluster)
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise TunerError(f"Cannot read Ray's metrics endpoint {url}: {exc}. Is the serving cluster running "
                         "(tuner promote --deploy starts it)? For another cluster pass --metrics-url "
                         "http://NODE:METRICS_EXPORT_PORT/metrics (ray start --metrics-export-port fixes the port).") from None
    return parse(text, application, at_s)


def _delta(now: dict, before: dict, key) -> float:
    # A counter that went down was reset (a replica restarted): count from zero.
    value, old = now.get(key, 0.0), before.get(key, 0.0)
    return value - old if value >= old else value


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram given as (upper bound, cumulative count) pairs sorted by
    bound (the last bound +inf), interpolated linearly inside the bucket it falls in; None when
    the histogram is empty. A quantile in the +inf bucket is the largest finite bound."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    low_bound, low_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return low_bound
            if count == low_count:
                return bound
            return low_bound + (bound - low_bound) * (rank - low_count) / (count - low_count)
        low_bound, low_count = bound, count
    return low_bound


def _histogram(now: Scrape, before: Scrape, name: str) -> list[tuple[float, float]]:
    bounds = sorted({le for (n, le) in now.buckets if n == name})
    return [(le, _delta(now.buckets, before.buckets, (name, le))) for le in bounds]


def _is_error(status: str) -> bool:
    return status.startswith("5") or status == "408"


def figures(before: Scrape, now: Scrape) -> LiveFigures:
    """The interval from `before` to `now` as rates and percentiles."""
    span = now.at_s - before.at_s
    if span <= 0:
        raise ValueError("the scrapes must be taken in order, some time apart")
    statuses = {s for (n, s) in now.counters if n == REQUESTS}
    answered = {s: _delta(now.counters, before.counters, (REQUESTS, s)) for s in statuses}
    ours_ok = sum(v for s, v in answered.items() if s.startswith("2"))
    errors = {s: v for s, v in answered.items() if _is_error(s) and v > 0}
    # Statuses Serve answered without our code (a full queue's 503): its count above ours.
    for (n, s) in now.counters:
        if n == SERVE_REQUESTS and _is_error(s):
            extra = _delta(now.counters, before.counters, (n, s)) - answered.get(s, 0.0)
            if extra > 0:
                errors[s] = errors.get(s, 0.0) + extra
    histogram = _histogram(now, before, LATENCY) or []
    if not histogram or histogram[-1][1] <= 0:
        histogram = _histogram(now, before, OWN_LATENCY)
    return LiveFigures(
        interval_s=span,
        inferences_per_s=_delta(now.counters, before.counters, (INSTANCES, "")) / span,
        requests_per_s=ours_ok / span,
        errors_per_s=sum(errors.values()) / span,
        error_statuses=tuple(sorted(errors)),
        latency_p50_ms=quantile(0.50, histogram),
        latency_p95_ms=quantile(0.95, histogram),
        ongoing_requests=now.ongoing,
        shadow_instances=_delta(now.counters, before.counters, (SHADOW, "")),
        shadow_agreed=_delta(now.counters, before.counters, (SHADOW_AGREED, "")),
    )
