"""Application metrics of the model server, recorded with `ray.serve.metrics`.

Where they appear: Ray's metrics agent on every node exports them, next to Ray Serve's own
metrics (``ray_serve_num_http_requests_total``, ``ray_serve_http_request_latency_ms``,
``ray_serve_deployment_queued_queries``, ``ray_serve_num_ongoing_http_requests`` ...), in the
Prometheus text format at ``http://NODE:METRICS_EXPORT_PORT/metrics``. Ray picks the port at
``ray start`` unless ``--metrics-export-port`` fixes it; ``ray.nodes()[i]["MetricsExportPort"]``
or the agent's command line (``--metrics-export-port=``) tell which. Ray prefixes every name
with ``ray_`` and adds the tags ``deployment``, ``replica`` and ``application``; counters get
``_total``, histograms ``_bucket`` / ``_sum`` / ``_count``:

- ``ray_tuner_infer_requests_total{model, status}``: inference requests answered by a replica,
  by HTTP status (200, 400, 404, 408, 413, 415, 500). Requests that Ray's proxy answers itself
  (503 when the queue is full, 408 on its time-out) are counted by Serve's own
  ``ray_serve_num_http_error_requests_total``, not here.
- ``ray_tuner_infer_request_latency_ms{model}``: from the replica receiving the request to its
  response being ready (reading the body, parsing, waiting for the batch, inference, encoding).
- ``ray_tuner_infer_instances_total{model}``: instances run (inferences): the rate `tuner watch`
  compares with the trial's throughput (a histogram's ``_sum`` read back here fell short of it).
- ``ray_tuner_infer_batches_total{model}``: ONNX Runtime calls; instances / batches is the mean
  batch size.
- ``ray_tuner_infer_batch_seconds_total{model}``: their wall time summed; over batches, the mean
  time of one call.
- ``ray_tuner_infer_shadow_instances_total{model}`` and ``ray_tuner_infer_shadow_agreed_total{model}``
  (``--shadow-fraction``, `serving.shadow`): live instances also run through the fp32 model, and
  those whose top-1 (argmax over the last axis of the first output) equals fp32's. Their ratio is
  the fidelity to fp32 on live traffic (`tuner watch`). A counter appears once it is first
  incremented: no agreed line yet means 0 agreed.

Metrics are exported every few seconds (Ray's report interval), not at once.

Per batch there are counters, not histograms: Ray 2.60's metrics agent replays every histogram
observation one by one (`record_histogram_aggregated_batch` in Ray's OpenTelemetry recorder), so
an observation costs the machine CPU a second time, in bursts that took one of this machine's two
cores for about a second every 10 s at 500 req/s (docs/measurement.md). The one histogram left,
the request latency, is the fallback of `tuner watch` when Serve's own is not there.
"""

from __future__ import annotations

#: Latency buckets from 0.25 ms to 60 s, at most ~1.5x apart below 1 s, so that a percentile
#: interpolated inside a bucket (`tuner watch`) is within a bucket's width of the true one. tuner's
#: serving cluster gives Ray Serve's own request latency histogram the same buckets.
LATENCY_BOUNDARIES_MS = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100,
                         150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000]


class ServerMetrics:
    """The metrics of one replica, tagged with the served model's name.

    Args:
        model_name: the served model's configured name (never the URL's: a client must not
            be able to create new time series).
    """

    def __init__(self, model_name: str) -> None:
        from ray.serve.metrics import Counter, Histogram  # here: the buckets above import without Ray

        tags = ("model",)
        self._requests = Counter(
            "tuner_infer_requests", tag_keys=("model", "status"),  # type: ignore[arg-type]  # Ray's hint says 1-tuples
            description="Inference requests answered by a replica, by HTTP status.")
        self._latency = Histogram(
            "tuner_infer_request_latency_ms", boundaries=LATENCY_BOUNDARIES_MS, tag_keys=tags,
            description="Inference request latency inside the replica, in milliseconds.")
        self._batches = Counter(
            "tuner_infer_batches", tag_keys=tags,
            description="ONNX Runtime calls (instances / batches: the mean batch size).")
        self._instances = Counter(
            "tuner_infer_instances", tag_keys=tags,
            description="Instances run by ONNX Runtime (inferences), summed over calls.")
        self._batch_seconds = Counter(
            "tuner_infer_batch_seconds", tag_keys=tags,
            description="Wall time of the ONNX Runtime calls, in seconds, summed.")
        self._shadow_instances = Counter(
            "tuner_infer_shadow_instances", tag_keys=tags,
            description="Live instances also run through the fp32 model and compared (top-1).")
        self._shadow_agreed = Counter(
            "tuner_infer_shadow_agreed", tag_keys=tags,
            description="Compared instances whose top-1 equals the fp32 model's.")
        for metric in (self._requests, self._latency, self._batches, self._instances, self._batch_seconds,
                       self._shadow_instances, self._shadow_agreed):
            metric.set_default_tags({"model": model_name})

    def request(self, status: int, latency_s: float) -> None:
        """Count one answered request and record its latency."""
        self._requests.inc(tags={"status": str(status)})
        self._latency.observe(latency_s * 1000.0)

    def batch(self, instances: int, latency_s: float) -> None:
        """Record one ONNX Runtime call."""
        self._batches.inc()
        self._instances.inc(instances)
        if latency_s > 0:  # Ray's counters refuse an increment of 0
            self._batch_seconds.inc(latency_s)

    def shadow(self, compared: int, agreed: int) -> None:
        """Count one batch of the fp32 shadow: instances compared, and those whose top-1 agreed."""
        if compared > 0:  # Ray's counters refuse an increment of 0
            self._shadow_instances.inc(compared)
        if agreed > 0:
            self._shadow_agreed.inc(agreed)
