"""Deploy a promoted trial, verify it under the trial's load, roll back when it falls short.

Verification drives the live HTTP endpoint with the trial's load mode: offline, one request
of `batch_size` instances in flight per replica (as the trial kept one call per replica
busy), or server, Poisson arrivals at the trial's rate; inputs travel as binary tensors so
JSON encoding does not distort a large input. It passes when the served throughput is at
least (1 - tolerance) of the trial's and the served p95 at most (1 + tolerance) of it.
Every promotion is kept in the study's ``promotions`` attribute (who, when, which trial,
the figures, the verdict), which the dashboard shows.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from tuner.config import TrialConfig
from tuner.deploy.promote import Promotion
from tuner.errors import TunerError
from tuner.models.spec import InputSpec
from tuner.record import TrialRecord
from tuner.spec.measurement import LoadSpec
from tuner.study.readback import study_model

HISTORY = "promotions"


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
    duration_s: float
    tolerance: float
    served: Figures
    tuned: Figures
    throughput_ratio: float
    p95_ratio: float
    requests_failed: int
    errors_sample: tuple[str, ...] = ()


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


def verify(base_url: str, model_name: str, inputs: Sequence[InputSpec], trial: TrialRecord, config: TrialConfig,
           load: LoadSpec, duration_s: float, tolerance: float) -> Verification:
    """Drive the endpoint like the trial was driven and compare the figures."""
    from serving.loadgen import drive

    if trial.metrics is None:
        raise TunerError(f"Trial #{trial.number} has no measurement to verify against. Promote a measured trial.")
    offline = load.mode == "offline"
    result = drive(base_url, model_name, inputs, mode=load.mode, batch_size=config.batch_size if offline else 1,
                   duration_s=duration_s, concurrency=config.replicas if offline else None,
                   target_rps=load.target_rps, binary=True)
    m = trial.metrics
    tuned = Figures(m.throughput_rps, m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms)
    served = Figures(result.throughput_rps, result.latency_p50_ms, result.latency_p95_ms, result.latency_p99_ms,
                     result.requests_ok)
    t_ratio = served.throughput_rps / tuned.throughput_rps if tuned.throughput_rps else 0.0
    p_ratio = served.latency_p95_ms / tuned.latency_p95_ms if tuned.latency_p95_ms else float("inf")
    passed = result.requests_failed == 0 and t_ratio >= 1 - tolerance and p_ratio <= 1 + tolerance
    return Verification(passed, load.mode, duration_s, tolerance, served, tuned, t_ratio, p_ratio,
                        result.requests_failed, tuple(result.errors_sample))


def describe(v: Verification) -> str:
    s, t = v.served, v.tuned
    return (f"verification ({v.mode} load, {v.duration_s:.0f} s): served {s.throughput_rps:,.1f} inf/s, "
            f"p95 {s.latency_p95_ms:.2f} ms; tuned {t.throughput_rps:,.1f} inf/s, p95 {t.latency_p95_ms:.2f} ms; "
            f"ratio throughput {v.throughput_ratio:.2f}, p95 {v.p95_ratio:.2f} (tolerance {v.tolerance:.0%}); "
            f"{v.requests_failed} failed requests -> {'PASSED' if v.passed else 'FAILED'}"
            + (f"\n  first errors: {'; '.join(v.errors_sample[:3])}" if v.errors_sample else ""))


def deploy_promotion(study: optuna.Study, promotion: Promotion, *, address: str | None, verify_s: float, tolerance: float,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Deploy `promotion` (from tuner.deploy.promote.promote), verify it, roll back on failure."""
    from serving import deploy as serve_deploy

    cluster = _cluster(address)
    app = promotion.serve_config["applications"][0]
    previous = active(study)
    took = serve_deploy.deploy(cluster, promotion.path, app["name"])
    http = promotion.serve_config["http_options"]
    base = f"http://{http['host']}:{http['port']}"
    log(f"deployed trial #{promotion.choice.trial.number} to {cluster.dashboard_url} in {took:.1f} s; "
        f"serving {base}/v2/models/{app['args']['model_name']}/infer")
    entry: dict[str, Any] = {"trial": promotion.choice.trial.number, "reason": promotion.choice.reason,
                             "config_path": str(promotion.path.resolve()), "serve_config": promotion.serve_config,
                             "cluster": cluster.dashboard_url, "verdict": "not verified"}
    if verify_s > 0:
        model = study_model(study)
        load = LoadSpec(**study.user_attrs.get("load", {}))
        v = verify(base, app["args"]["model_name"], model.inputs, promotion.choice.trial, promotion.config,
                   load, verify_s, tolerance)
        log(describe(v))
        entry |= {"verdict": "passed" if v.passed else "failed", "verification": asdict(v)}
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


def _cluster(address: str | None):
    from serving import deploy as serve_deploy

    if address is None:
        return serve_deploy.local_cluster(start=True)
    url = address if address.startswith("http") else f"http://{address.split(':')[0]}:8265"
    return serve_deploy.ServeCluster(address=address, dashboard_url=url)
