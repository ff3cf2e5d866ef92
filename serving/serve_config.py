"""The Ray Serve config file: generate it from a trial's configuration (`make_serve_config(TrialConfig,
ServedModel, ServingOptions)`) and write it. Loading and checking a file: `serving.serve_config_check`;
the model and options records: `serving.options`.

The file is a standard Ray Serve multi-application config, so ``serve run FILE`` and
``serve deploy FILE`` work on it without tuner.

Limits and updates it sets (Ray Serve 2.60 behaviour):

- ``max_ongoing_requests`` per replica (2 x batch_size: one batch runs while the next fills).
- ``max_queued_requests``: requests a replica holds while it is full (4 x max_ongoing_requests,
  at least 64; per replica on Serve's fast path, where each replica takes HTTP itself); one more
  is answered at once with HTTP 503 (text/plain "Request dropped due to backpressure ...", plus
  ``Retry-After`` from ``backpressure_config``; Ray has no JSON form for it).
- ``http_options.request_timeout_s``: Ray's proxy answers HTTP 408 (text/plain "Request ...
  timed out after N s.") when a request takes longer end to end. A client can change or
  disable it per request with Ray's ``x-request-timeout-seconds`` header; the replica's own
  ``user_config.body_timeout_s`` (same value) still bounds how long a slow upload holds a replica.
- ``max_surge_percent: 100``: on an update that restarts replicas, the replacements start
  beside the old ones, which keep serving until replacements are running, then drain. With
  no room for the replacements, the old replicas keep serving and the update waits.
- ``graceful_shutdown_timeout_s``: how long a stopping replica may finish in-flight requests
  (the request time-out, since no request can legitimately take longer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from serving.args import (
    DEPLOYMENT_NAME,
    IMPORT_PATH,
    ServeArgs,
    ServeSettings,
    max_ongoing_requests_for,
    max_queued_requests_for,
)
from serving.options import ServedModel, ServingOptions
from serving.serve_config_check import validation_message
from tuner.config import TrialConfig
from tuner.errors import TunerError, field_error
from tuner.models.cache import write_atomic


def _check_options(options: ServingOptions) -> None:
    for name in ("request_timeout_s", "retry_after_s", "graceful_shutdown_timeout_s"):
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value < float("inf")):
            raise field_error(name, value, "It must be a positive number of seconds.", "Pass e.g. 30.")
    port = options.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise field_error("port", port, "It must be an integer from 1 to 65535.", "Pick a free port.")
    surge = options.max_surge_percent
    if isinstance(surge, bool) or not isinstance(surge, int) or not 0 <= surge <= 100:
        raise field_error("max_surge_percent", surge, "It must be an integer from 0 to 100 (Ray's rule).",
                          "Pass 100 for zero-downtime updates, 0 to stop old replicas first.")


def serve_settings_for(config: TrialConfig, model: ServedModel, options: ServingOptions) -> ServeSettings:
    """The deployment's user_config for `config` served from `model` (what replicas change in place)."""
    try:
        return ServeSettings(
            model_path=model.path, precision=config.precision,
            batch_size=config.batch_size, threads_per_replica=config.threads_per_replica,
            batch_wait_timeout_s=options.batch_wait_timeout_s, input_shapes=dict(model.input_shapes),
            max_body_bytes=options.max_body_bytes, body_timeout_s=options.request_timeout_s,
            request_timeout_s=options.request_timeout_s,
            providers=list(options.gpu.providers) if options.gpu else ["CPUExecutionProvider"],
            auth_token_sha256=options.auth_token_sha256,
            shadow_fraction=options.shadow_fraction, shadow_model_path=options.shadow_model_path,
        )
    except ValidationError as exc:
        raise TunerError(f"Cannot build the Serve config:\n{validation_message(exc, 'user_config')}") from None


def make_serve_config(config: TrialConfig, model: ServedModel, options: ServingOptions | None = None
                      ) -> dict[str, Any]:
    """A Ray Serve multi-application config that serves `config` of `model` over V2 REST.

    Args:
        config: the trial's configuration (a cpu one: precision, batch size, replicas, threads).
        model: the model file to serve.
        options: host, port, limits and update policy (defaults: `ServingOptions()`).

    Returns:
        A dict that validates as `ray.serve.schema.ServeDeploySchema`.

    Raises:
        TunerError: an argument breaks a rule (named, with the value and the fix).
    """
    options = options or ServingOptions()
    if config.platform not in ("cpu", "gpu"):
        raise field_error("platform", config.platform, "The Serve application runs ONNX Runtime on CPUs "
                          "and GPUs; FPGA trials are estimates.", "Promote a cpu or gpu trial (tuner show lists them).")
    if (config.platform == "gpu") != (options.gpu is not None):
        raise field_error("options.gpu", options.gpu, "A gpu trial needs its GPU share and providers, and only "
                          "a gpu trial has them.", "Pass GpuServing from the trial's gpu record for a gpu trial.")
    if options.gpu is not None and not 0 < options.gpu.num_gpus <= 1:
        raise field_error("options.gpu.num_gpus", options.gpu.num_gpus, "It must be in (0, 1]: a replica holds "
                          "one GPU or a share of one.", "Use the trial's num_gpus_per_replica.")
    _check_options(options)
    settings = serve_settings_for(config, model, options)
    try:
        args = ServeArgs(model_name=model.name)
    except ValidationError as exc:
        raise TunerError(f"Cannot build the Serve config:\n{validation_message(exc, 'args')}") from None
    replicas = config.replicas
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise field_error("replicas", replicas, "It must be an integer >= 1.", "Pass a positive count.")
    max_ongoing = _positive_int("max_ongoing_requests", options.max_ongoing_requests,
                                max_ongoing_requests_for(config.batch_size))
    max_queued = _positive_int("max_queued_requests", options.max_queued_requests,
                               max_queued_requests_for(max_ongoing))
    serve_config = {
        # One proxy on the head node: a single, predictable endpoint URL.
        "proxy_location": "HeadOnly",
        "http_options": {"host": options.host, "port": options.port, "request_timeout_s": options.request_timeout_s},
        "applications": [
            {
                "name": options.app_name,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json"),
                "deployments": [
                    {
                        "name": DEPLOYMENT_NAME,
                        **({"autoscaling_config": dict(options.autoscaling_config)} if options.autoscaling_config
                           else {"num_replicas": replicas}),
                        # Serve's default (5) would silently cap batches.
                        "max_ongoing_requests": max_ongoing,
                        "max_queued_requests": max_queued,
                        "backpressure_config": {"retry_after_s": options.retry_after_s},
                        "max_surge_percent": options.max_surge_percent,
                        "graceful_shutdown_timeout_s": (
                            options.graceful_shutdown_timeout_s or options.request_timeout_s),
                        "ray_actor_options": _actor_options(config, options),
                        "logging_config": {"enable_access_log": options.access_log},
                        # Changed in place by a running replica (ModelServer.reconfigure).
                        "user_config": settings.model_dump(mode="json"),
                    }
                ],
            }
        ],
    }
    try:
        ServeDeploySchema.model_validate(serve_config)
    except ValidationError as exc:
        raise TunerError("Cannot build the Serve config; Ray's schema refuses it:\n"
                         f"{validation_message(exc, 'config')}") from None
    if options.autoscaling_config is not None:
        # ServeDeploySchema takes any dict there (Dict | AutoscalingConfig); the controller would
        # apply Ray's rules (min <= initial <= max, ...) only at deploy time, as DEPLOY_FAILED.
        try:
            AutoscalingConfig.model_validate(dict(options.autoscaling_config))
        except ValidationError as exc:
            raise TunerError("Cannot build the Serve config; Ray's AutoscalingConfig refuses it:\n"
                             f"{validation_message(exc, 'autoscaling_config')}") from None
    return serve_config


def _actor_options(config: TrialConfig, options: ServingOptions) -> dict[str, float]:
    """A replica's Ray resources: its threads' cores; a gpu replica also its GPU share (its one
    host thread drives the GPU)."""
    if options.gpu is None:
        return {"num_cpus": config.threads_per_replica}
    return {"num_cpus": 1, "num_gpus": options.gpu.num_gpus}


def _positive_int(name: str, value: int | None, default: int) -> int:
    """`value`, or `default` when it is None; a TunerError unless it is an integer >= 1."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise field_error(name, value, "It must be an integer >= 1.",
                          f"Pass a positive count, or leave it out for {default}.")
    return value


def write_serve_config(config: dict[str, Any], path: Path, comment: str = "") -> Path:
    """Write `config` as YAML, atomically, under a header comment.

    Args:
        config: a dict from `make_serve_config`.
        path: where to write it; parent directories are created.
        comment: where it came from, e.g. "study digits, trial 17 (cpu fp32 b16 2x1t)";
            one ``#`` line per line of text.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [f"# {line}".rstrip() for line in comment.splitlines()]
    header += ["# Ray Serve config generated by tuner. Run it with: serve run " + path.name]
    text = "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False)
    write_atomic(path, text.encode("utf-8"))
    return path
