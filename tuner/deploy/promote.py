"""Promote a trial: choose it (the selection policy), re-materialise its config with the same
`suggest()` that proposed it, and write the Ray Serve config that deploys it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FixedTrial

from serving.args import max_ongoing_requests_for
from serving.auth import check_exposure
from serving.options import GpuServing, ServedModel, ServingOptions
from serving.serve_config import make_serve_config, write_serve_config
from tuner.config import TrialConfig
from tuner.deploy.autoscale import AutoscalePlan, Traffic, capacity_of, plan_autoscaling, this_machine_cpus
from tuner.deploy.rayservice import RayService, RayServiceOptions, rayservice_manifest, write_rayservice
from tuner.errors import TunerError, field_error
from tuner.front.selection import DEFAULT_POLICY, SERVABLE, Choice, choose, explicit
from tuner.models.spec import PreparedModel
from tuner.record import TrialRecord
from tuner.search.suggest import suggest
from tuner.spec.space import SearchSpace
from tuner.study.readback import study_model, study_record


@dataclass(frozen=True)
class Promotion:
    """A chosen trial and the Serve config that deploys it (a dict: the Ray Serve edge)."""

    choice: Choice
    config: TrialConfig
    serve_config: dict[str, Any]
    path: Path
    autoscaling: AutoscalePlan | None = None  # with --traffic-rps: how its autoscaling_config was derived
    rayservice: RayService | None = None  # with --format rayservice: the KubeRay manifest written instead


def rematerialise(study: optuna.Study, number: int) -> TrialConfig:
    """The chosen trial's config, rebuilt by the same `suggest()` that proposed it, within the
    search space's own bounds (no cluster is consulted)."""
    trial = study.trials[number]
    space = SearchSpace.model_validate(study.user_attrs["search_space"])
    config = suggest(space, FixedTrial(trial.params, number=number), cluster=None)
    recorded = trial.user_attrs.get("config")
    if recorded is not None and TrialConfig.from_dict(recorded) != config:
        raise TunerError(
            f"Trial #{number}'s params {trial.params} rebuild to {config}, but it measured "
            f"{recorded}. The study's search space was changed after the trial ran; promote "
            "another trial or re-tune."
        )
    return config


SHADOW_RULE = ("It must be a number in (0, 1]: the share of live instances each replica also runs through the "
               "fp32 model to measure top-1 agreement.")


def parse_shadow_fraction(value: str | float | None) -> float | None:
    """``--shadow-fraction`` as a float in (0, 1], or None when not given.

    Raises:
        TunerError: not a number, or outside (0, 1] (named, with the value, the rule and the fix).
    """
    if value is None:
        return None
    try:
        fraction = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction <= 1:  # also refuses nan
        raise field_error("--shadow-fraction", value, SHADOW_RULE,
                          "Pass e.g. 0.05 (5% of instances), or leave the flag out for no shadow.")
    return fraction


def shadow_options(fraction: float | None, config: TrialConfig, number: int, model: PreparedModel) -> dict[str, Any]:
    """The ServingOptions fields of the fp32 shadow for trial `number` (empty without one).

    Raises:
        TunerError: the trial serves fp32 (comparing it with itself measures nothing), or the fp32
            variant's file is missing.
    """
    fraction = parse_shadow_fraction(fraction)
    if fraction is None:
        return {}
    if config.precision == "fp32":
        raise field_error("--shadow-fraction", fraction, f"Trial #{number} serves fp32, and the shadow compares the "
                          "served precision with fp32: comparing fp32 with itself measures nothing.",
                          "Promote a trial of another precision (--trial N; tuner show lists them), or drop "
                          "--shadow-fraction.")
    fp32 = model.variants.get("fp32")
    if fp32 is None or not Path(fp32.path).is_file():
        raise TunerError(f"The fp32 variant's file {fp32.path if fp32 else None!r}, which --shadow-fraction compares "
                         "with, is missing (the model cache was cleared or the study came from another machine). "
                         "Re-run tuner tune with the same --model to rebuild it, or drop --shadow-fraction.")
    return {"shadow_fraction": fraction, "shadow_model_path": str(Path(fp32.path).resolve())}


def gpu_serving(trial: TrialRecord) -> GpuServing | None:
    """A gpu trial's GPU share and providers, from its record (what it was measured with)."""
    if trial.platform != "gpu":
        return None
    if trial.gpu is None:
        raise TunerError(f"Trial #{trial.number} is a gpu trial without a gpu record (its backend and GPU share): "
                         "it was measured by an older tuner. Re-tune, or promote another trial.")
    return GpuServing(trial.gpu.num_gpus_per_replica, trial.gpu.providers)


def promote(study: optuna.Study, out: Path, trial: int | None, policy: str = DEFAULT_POLICY,
            host: str = "127.0.0.1", port: int = 8000, *, slo_ms: float | None = None,
            max_cost: float | None = None, dry_run: bool = False, auth_token_sha256: str | None = None,
            no_auth: bool = False, traffic: Traffic | None = None, cluster_cpus: int | None = None,
            rayservice: RayServiceOptions | None = None, shadow_fraction: float | None = None) -> Promotion:
    """Choose a trial and write its Serve config (not with `dry_run`: then only choose).

    `rayservice` (``--format rayservice``): write a KubeRay RayService manifest to `out` instead
    (`tuner.deploy.rayservice`: the same Serve config as its pods run it); its proxy binds 0.0.0.0
    in the pod, so it needs `auth_token_sha256` or the options' ``no_auth``.

    `traffic` (``--traffic-rps``): write an ``autoscaling_config`` derived from the trial's
    measured per-replica capacity (`tuner.deploy.autoscale`) instead of a fixed ``num_replicas``,
    for a cluster of `cluster_cpus` CPUs (None: this machine's, where tuner's local serving
    cluster runs).

    `auth_token_sha256`: the digest of the bearer token the replicas require (`serving.auth`);
    a `host` that is not loopback needs one, or `no_auth` (the user's explicit ``--no-auth``).

    `shadow_fraction` (``--shadow-fraction``, in (0, 1]): each replica also runs that share of live
    instances through the fp32 variant and counts top-1 agreement (`serving.shadow`); refused for
    an fp32 trial.

    Raises:
        TunerError: no trial can be promoted, `host` is exposed without a token or `no_auth`, or
            `shadow_fraction` is out of (0, 1] or given for an fp32 trial.
    """
    parse_shadow_fraction(shadow_fraction)  # before anything is chosen or written
    check_exposure(host, auth_token_sha256 is not None, no_auth, host_field="--host",
                   fix="Pass --auth-token-file FILE (every replica then requires that bearer token)")
    record = study_record(study)
    if slo_ms is None:
        slo_ms = study.user_attrs.get("search_space", {}).get("constraints", {}).get("latency_p95_ms_max")
    if trial is not None:
        choice = explicit(record.trials, trial, SERVABLE)
    else:
        # Trials of the TEST backend (CPU figures behind a declared GPU) are promoted only by --trial N.
        real = tuple(r for r in record.trials if not (r.gpu and r.gpu.test_backend))
        choice = choose(real, policy, SERVABLE, slo_ms=slo_ms, max_cost=max_cost, objectives=record.objectives)
    number = choice.trial.number
    config = rematerialise(study, number)
    model = study_model(study)
    artifact = choice.trial.artifact
    if not artifact or not Path(artifact).is_file():
        raise TunerError(
            f"Trial #{number}'s model file {artifact!r} is missing (the model cache was cleared or "
            "the study came from another machine). Re-run tuner tune with the same --model to "
            "rebuild it (the cache is keyed by content, so the path comes back)."
        )
    served = ServedModel(model.name, artifact, {s.name: list(s.shape) for s in model.inputs})
    options = ServingOptions(host=host, port=port, batch_wait_timeout_s=study.user_attrs.get("load", {}).get(
        "batch_wait_timeout_s", 0.005), gpu=gpu_serving(choice.trial), auth_token_sha256=auth_token_sha256,
        **shadow_options(shadow_fraction, config, number, model))
    plan = None
    if traffic is not None:  # autoscaling from the trial's measured per-replica capacity
        cpus = config.threads_per_replica if options.gpu is None else 1  # its ray_actor_options' num_cpus
        capacity = capacity_of(choice.trial, study.trials[number].user_attrs.get("measurement") or {},
                               options.max_ongoing_requests or max_ongoing_requests_for(config.batch_size), cpus)
        plan = plan_autoscaling(capacity, traffic, this_machine_cpus() if cluster_cpus is None else cluster_cpus)
        options = replace(options, autoscaling_config=plan.serve_config())
    serve_config = make_serve_config(config, served, options)
    manifest = None
    if rayservice is not None:  # built (and checked: the pod binds 0.0.0.0) before any approval or dry run ends
        manifest = rayservice_manifest(study.study_name, serve_config, config, rayservice,
                                       {"tuner/study": study.study_name, "tuner/trial": str(number)})
    if not dry_run:
        comment = (f"tuner promote: study {study.study_name!r}, trial #{number}, {choice.reason}"
                   + (f"\n{plan.describe()}" if plan else ""))
        if manifest is not None:
            write_rayservice(manifest, out, comment)
        else:
            write_serve_config(serve_config, out, comment=comment)
    return Promotion(choice, config, serve_config, out, plan, manifest)
