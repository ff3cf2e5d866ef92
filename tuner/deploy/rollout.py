"""Deploy a promoted trial, verify it (`tuner.deploy.verification`), roll back when it falls short.

Every promotion is kept in the study's ``promotions`` attribute (who, when, which trial,
the figures, the verdict), which the dashboard shows.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from tuner.deploy.promote import Promotion
from tuner.deploy.verification import ClientPlan, describe, verify
from tuner.errors import TunerError
from tuner.spec.measurement import LoadSpec
from tuner.spec.space import SearchSpace
from tuner.study.companions import refresh_dashboard
from tuner.study.readback import study_model

if TYPE_CHECKING:
    from serving.auth import BearerToken

HISTORY = "promotions"


def history(study: optuna.Study) -> list[dict[str, Any]]:
    return list(study.user_attrs.get(HISTORY, []))


def active(study: optuna.Study) -> dict[str, Any] | None:
    """The promotion currently serving (the last one marked active)."""
    live = [h for h in history(study) if h.get("active")]
    return live[-1] if live else None


def record(study: optuna.Study, entry: dict[str, Any], make_active: bool) -> None:
    entries = history(study)
    if make_active:
        for h in entries:
            h["active"] = False
    entry = {**entry, "active": make_active, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "user": getpass.getuser()}
    entries.append(entry)
    study.set_user_attr(HISTORY, entries)
    refresh_dashboard(study)  # the study note lists the promotions; the companions follow


def deploy_promotion(study: optuna.Study, promotion: Promotion, *, address: str | None, verify_s: float, tolerance: float,
                     log: Callable[[str], None] = print, num_gpus: int | None = None,
                     approval: dict[str, Any] | None = None, auth_token: BearerToken | None = None) -> dict[str, Any]:
    """Deploy `promotion` (from tuner.deploy.promote.promote), verify it, roll back on failure;
    `num_gpus`: GPUs a new local serving cluster declares (None: what Ray detects); `approval`:
    the person's decision that released it (`tuner.deploy.approval`), kept in the entry;
    `auth_token`: the token the config's digest is of, for verification (never recorded)."""
    from serving import deploy as serve_deploy

    app = promotion.serve_config["applications"][0]
    digest = app["deployments"][0]["user_config"].get("auth_token_sha256")
    if verify_s > 0 and digest is not None and (auth_token is None or auth_token.sha256 != digest):
        raise TunerError(f"{promotion.path} requires a bearer token (user_config.auth_token_sha256), and "
                         f"{'no token' if auth_token is None else 'another token'} was given to verify it with. "
                         "Pass the --auth-token-file the config was promoted with, or --verify-s 0.")
    cluster = _cluster(address, num_gpus)
    previous = active(study)
    took = serve_deploy.deploy(cluster, promotion.path, app["name"])
    http = promotion.serve_config["http_options"]
    base = f"http://{http['host']}:{http['port']}"
    log(f"deployed trial #{promotion.choice.trial.number} to {cluster.dashboard_url} in {took:.1f} s; "
        f"serving {base}/v2/models/{app['args']['model_name']}/infer")
    entry: dict[str, Any] = {"trial": promotion.choice.trial.number, "reason": promotion.choice.reason,
                             "config_path": str(promotion.path.resolve()), "serve_config": promotion.serve_config,
                             "cluster": cluster.dashboard_url, "verdict": "not verified"}
    if approval is not None:
        entry["approval"] = approval
    if promotion.autoscaling is not None:  # --traffic-rps: how its autoscaling_config was derived
        entry["autoscaling"] = asdict(promotion.autoscaling) | {"derivation": promotion.autoscaling.describe()}
    if verify_s > 0:
        model = study_model(study)
        load = LoadSpec(**study.user_attrs.get("load", {}))
        trial = promotion.choice.trial
        plan = ClientPlan.of_trial(study.trials[trial.number].user_attrs.get("measurement") or {}, promotion.config,
                                   int(app["deployments"][0]["max_ongoing_requests"]), trial.level)
        settings = SearchSpace.model_validate(study.user_attrs["search_space"]).measurement \
            if "search_space" in study.user_attrs else None
        v = verify(base, app["args"]["model_name"], model.inputs, trial, plan, load, verify_s, tolerance, settings,
                   auth_token=auth_token)
        log(describe(v))
        entry |= {"verdict": "passed" if v.passed else "failed", "verification": asdict(v)}
        if promotion.autoscaling is not None:  # started on the trial's replicas; the load may have added some
            entry["replicas_after_verification"] = sum(serve_deploy.running_replicas(cluster, app["name"]).values())
            log(f"  autoscaled: verification started on {promotion.autoscaling.initial_replicas} replica(s) (the "
                f"trial's), {entry['replicas_after_verification']} ran at its end")
        if not v.passed:
            if previous is None:
                log("nothing was promoted before on this study: the new deployment stays; check the figures above.")
            else:
                entry["rolled_back_to"] = previous["trial"]
                record(study, entry, make_active=False)
                rollback_to(study, previous, cluster, log, reason=f"verification of trial #{entry['trial']} failed")
                return entry
    record(study, entry, make_active=True)
    return entry


def rollback_to(study: optuna.Study, target: dict[str, Any], cluster, log, reason: str) -> None:
    """Redeploy an earlier promotion's config (rolling update: no request fails)."""
    from serving import deploy as serve_deploy
    from serving.serve_config import write_serve_config

    path = Path(target["config_path"]).with_suffix(".rollback.yaml")
    write_serve_config(target["serve_config"], path, comment=f"tuner rollback to trial #{target['trial']}: {reason}")
    took = serve_deploy.deploy(cluster, path, target["serve_config"]["applications"][0]["name"])
    log(f"rolled back to trial #{target['trial']} in {took:.1f} s ({reason})")
    record(study, {k: v for k, v in target.items() if k not in ("active", "time", "user")}
           | {"verdict": "rollback", "reason": reason}, make_active=True)


def rollback(study: optuna.Study, address: str | None, log=print) -> dict[str, Any]:
    """`tuner rollback`: restore the promotion that was active before the current one."""
    entries = [h for h in history(study) if h.get("verdict") in ("passed", "not verified", "rollback")]
    current = active(study)
    earlier = [h for h in entries if current is None or h["trial"] != current["trial"]]
    if not earlier:
        raise TunerError(f"Study {study.study_name!r} has no earlier promotion to roll back to "
                         f"({len(history(study))} promotion(s) recorded). Promote a trial with --deploy first.")
    target = earlier[-1]
    rollback_to(study, target, _cluster(address), log, reason="tuner rollback")
    return target


def _cluster(address: str | None, num_gpus: int | None = None):
    from serving import deploy as serve_deploy

    if address is None:
        return serve_deploy.local_cluster(start=True, num_gpus=num_gpus)
    url = address if address.startswith("http") else f"http://{address.split(':')[0]}:8265"
    return serve_deploy.ServeCluster(address=address, dashboard_url=url)
