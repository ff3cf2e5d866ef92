"""`tuner watch`: follow the promoted deployment live and say when it no longer fits.

Every `WatchOptions.interval_s` it reads Ray's metrics endpoint (`tuner.deploy.livemetrics`) and
Serve's status (replicas), prints one status line, and judges the interval
(`tuner.deploy.drift`): overload, p95 above the SLO, errors, or a cheaper configuration that
would do. On a drift it names the study's configuration that fits the observed load; with
``apply`` it promotes that one (a rolling update: the old replicas serve until the new ones
run), with ``retune`` it starts a warm-started study in server mode at the observed rate.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from tuner.deploy.autoscale import Traffic
from tuner.deploy.drift import Fidelity, Promoted, Verdict, judge, label
from tuner.deploy.livemetrics import LiveFigures, Scrape, figures, scrape
from tuner.errors import TunerError
from tuner.front.levels import comparable
from tuner.front.selection import SERVABLE
from tuner.record import TrialRecord
from tuner.study.readback import study_model, study_record

if TYPE_CHECKING:
    from serving.auth import BearerToken

#: Drifts another configuration can mend (server errors are not a matter of configuration).
RETUNED = ("overload", "accuracy", "slo", "underused")


@dataclass(frozen=True)
class WatchOptions:
    """How `watch` runs.

    Attributes:
        interval_s: seconds between reads (at least Ray's metrics export interval, 2 s on
            tuner's serving cluster).
        duration_s: stop after this long (None: until Ctrl-C).
        underused_s: how long a cheaper configuration must keep fitting before it is a drift.
        apply: promote the fitting configuration on a drift.
        retune: start a warm-started study at the observed rate on a drift (and stop watching).
        metrics_url: Ray's metrics endpoint (None: tuner's local serving cluster's).
        out: where an applied promotion's Serve config is written.
        verify_s: verification load after an applied switch (0: none, the default: a synthetic
            load would compete with the live traffic; the live figures verify it instead).
        settle_s: after a switch, how long to wait before judging again (new replicas warm up).
        storage: the study's storage URL, passed on to a retune (None: the default).
        retune_trials: trials of the retune study (its warm start's re-measurements count).
        auth_token: the running deployment's bearer token (`--auth-token-file`), used only to
            verify an applied switch (`verify_s` > 0); never recorded.
    """

    interval_s: float = 3.0
    duration_s: float | None = None
    underused_s: float = 60.0
    apply: bool = False
    retune: bool = False
    metrics_url: str | None = None
    out: Path = Path("serve_config.yaml")
    verify_s: float = 0.0
    settle_s: float = 6.0
    storage: str | None = None
    retune_trials: int = 12
    auth_token: BearerToken | None = None


@dataclass(frozen=True)
class Deployment:
    """What is being watched: the active promotion of the study."""

    trial: int
    app_name: str
    cluster_url: str  # Serve's dashboard (REST API)
    max_ongoing_requests: int
    host: str
    port: int
    auth_token_sha256: str | None = None  # the replicas' bearer token digest, if they require one
    shadow_fraction: float | None = None  # share of live instances also run through fp32, if any
    traffic: Traffic | None = None  # promote --traffic-rps: the range its autoscaling_config was derived for
    cluster_cpus: int | None = None  # ... and the cluster's CPUs it was planned on


def active_deployment(study: optuna.Study) -> Deployment:
    from tuner.deploy.rollout import active

    entry = active(study)
    if entry is None:
        raise TunerError(f"Study {study.study_name!r} has no active promotion to watch. Deploy one first: "
                         f"tuner promote --study {study.study_name} --deploy")
    app = entry["serve_config"]["applications"][0]
    http = entry["serve_config"].get("http_options") or {}
    settings = app["deployments"][0].get("user_config") or {}
    scaled = entry.get("autoscaling") or {}
    traffic = Traffic(**{k: float(v) for k, v in scaled["traffic"].items()}) if scaled.get("traffic") else None
    return Deployment(int(entry["trial"]), app["name"], entry["cluster"],
                      int(app["deployments"][0]["max_ongoing_requests"]),
                      str(http.get("host", "127.0.0.1")), int(http.get("port", 8000)),
                      settings.get("auth_token_sha256"), settings.get("shadow_fraction") or None,
                      traffic, int(scaled["cluster_cpus"]) if traffic is not None else None)


def candidates(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The study's configurations a switch may go to: feasible, measured (not estimated), servable
    here, one measurement level, not a test backend's."""
    return [r for r in comparable(records) if r.feasible and r.metrics is not None and not r.metrics.estimated
            and r.config is not None and r.config.platform in SERVABLE and r.reused_from is None
            and not (r.gpu and r.gpu.test_backend)]


def _cluster(dep: Deployment):
    from serving import deploy as serve_deploy

    local = serve_deploy.local_cluster(start=False)
    if local is not None and local.dashboard_url == dep.cluster_url:
        return local
    return serve_deploy.ServeCluster(address=dep.cluster_url, dashboard_url=dep.cluster_url)


def running_replicas(cluster: Any, app_name: str) -> int:
    """Replicas of the application in state RUNNING, from Serve's REST API."""
    from serving import deploy as serve_deploy

    return sum(serve_deploy.running_replicas(cluster, app_name).values())


def status_line(live: LiveFigures, replicas: int, verdict: Verdict, fidelity: Fidelity | None = None) -> str:
    p95 = "-" if live.latency_p95_ms is None else f"{live.latency_p95_ms:.2f} ms"
    shadow = "" if fidelity is None or fidelity.agreement is None else \
        f"  fp32 agreement {fidelity.agreement:.4f} (n={fidelity.compared:,.0f})"
    return (f"{time.strftime('%H:%M:%S')}  {live.inferences_per_s:>9,.0f} inf/s  {live.requests_per_s:>8,.0f} req/s  "
            f"p95 {p95} (in replicas)  {live.ongoing_requests:.0f} in flight  {replicas} replica(s)  "
            f"{live.errors_per_s:,.1f} err/s{shadow}  | {verdict.message}")


class Watcher:
    """One watch session on `study` (see the module docstring)."""

    def __init__(self, study: optuna.Study, options: WatchOptions, log: Callable[[str], None] = print) -> None:
        self.study, self.options, self.log = study, options, log
        self._load()
        self._check_token()

    def _check_token(self) -> None:
        """Refuse at the start, not at the first switch, a token the deployment was not promoted with,
        or none where an applied switch is to be verified against an authenticated endpoint."""
        token, digest = self.options.auth_token, self.dep.auth_token_sha256
        if token is not None and token.sha256 != digest:
            raise TunerError("--auth-token-file holds " + ("a token, but the deployment requires none" if digest is None
                             else "another token than the deployment was promoted with (its SHA-256 differs)")
                             + ". Pass the token file the deployment was promoted with, or leave the option out.")
        if self.options.apply and self.options.verify_s > 0 and digest is not None and token is None:
            raise TunerError("The deployment requires a bearer token, so verifying an applied switch (--verify-s "
                             f"{self.options.verify_s:g}) needs it: pass --auth-token-file with the file the "
                             "deployment was promoted with, or --verify-s 0.")

    def _load(self) -> None:
        self.dep = active_deployment(self.study)
        self.cluster = _cluster(self.dep)
        url = self.options.metrics_url or getattr(self.cluster, "metrics_url", None)
        if not url:
            raise TunerError(f"Do not know Ray's metrics endpoint of the cluster at {self.dep.cluster_url}. Pass "
                             "--metrics-url http://HEAD:METRICS_EXPORT_PORT/metrics (ray start "
                             "--metrics-export-port fixes the port; ray.nodes() lists it as MetricsExportPort).")
        self.metrics_url = url
        records = study_record(self.study).trials
        self.candidates = candidates(records)
        chosen = [r for r in records if r.number == self.dep.trial and r.metrics is not None]
        if not chosen:
            raise TunerError(f"The active promotion is trial #{self.dep.trial}, which has no measured figures. "
                             "Promote a measured trial.")
        self.trial = chosen[0]
        constraints = (self.study.user_attrs.get("search_space") or {}).get("constraints") or {}
        self.slo_ms = constraints.get("latency_p95_ms_max")
        self.accuracy_floor = float(constraints.get("accuracy_min_ratio", 0.99))
        self.underused_since: float | None = None
        self.fidelity = Fidelity()  # since this deployment was first watched

    def promoted(self, replicas: int) -> Promoted:
        """The promoted trial's figures for `replicas` running replicas: its capacity scales with
        them (an autoscaled deployment runs more or fewer than the trial measured)."""
        m, c = self.trial.metrics, self.trial.config
        assert m is not None and c is not None
        running = max(1, replicas)
        return Promoted(self.trial, m.throughput_rps / c.replicas * running, m.latency_p95_ms,
                        self.dep.max_ongoing_requests * running, self.trial.level or "engine")

    def read(self) -> Scrape:
        return scrape(self.metrics_url, self.dep.app_name, time.monotonic())

    def run(self) -> int:
        o = self.options
        self.log(f"watching trial {label(self.trial)} of study {self.study.study_name!r}: application "
                 f"{self.dep.app_name!r} at http://{self.dep.host}:{self.dep.port}, metrics {self.metrics_url}, "
                 f"every {o.interval_s:g} s; " + (f"p95 SLO {self.slo_ms:g} ms" if self.slo_ms is not None else "no p95 SLO"))
        ends = None if o.duration_s is None else time.monotonic() + o.duration_s
        before = self.read()
        try:
            while ends is None or time.monotonic() < ends:
                time.sleep(o.interval_s)
                now = self.read()
                replicas = running_replicas(self.cluster, self.dep.app_name)
                live = figures(before, now)
                before = now
                self.fidelity = self.fidelity + Fidelity(live.shadow_instances, live.shadow_agreed)
                verdict = self._sustained(judge(live, self.promoted(replicas), self.candidates, self.slo_ms,
                                                self.fidelity, self.accuracy_floor))
                self.log(status_line(live, replicas, verdict, self.fidelity))
                if verdict.kind in RETUNED and o.retune:  # also when no configuration of the study fits
                    return self.retune(verdict)
                if verdict.kind in RETUNED and o.apply and verdict.fit is not None \
                        and verdict.fit.number != self.trial.number:
                    self.switch(verdict.fit)
                    time.sleep(o.settle_s)
                    before = self.read()
        except KeyboardInterrupt:
            self.log("stopped")
        return 0

    def _sustained(self, verdict: Verdict) -> Verdict:
        """An underused verdict counts only once it has held for `underused_s`."""
        if verdict.kind != "underused":
            self.underused_since = None
            return verdict
        since = self.underused_since = self.underused_since or time.monotonic()
        held = time.monotonic() - since
        if held >= self.options.underused_s:
            return verdict
        return Verdict("ok", f"ok (for {held:.0f} of {self.options.underused_s:g} s: {verdict.message})", None,
                       verdict.demand_rps)

    def switch(self, fit: TrialRecord) -> None:
        from tuner.deploy.promote import promote
        from tuner.deploy.rollout import deploy_promotion

        self.log(f"applying: promoting trial {label(fit)}")
        # What the running deployment was promoted with carries over: its bearer token's digest (or,
        # without one, the choice to expose it anyway), its fp32 shadow (not for an fp32 trial) and its
        # autoscaling traffic range (the new trial's autoscaling_config is derived from its own capacity).
        shadow = self.dep.shadow_fraction if fit.config is not None and fit.config.precision != "fp32" else None
        promotion = promote(self.study, self.options.out, fit.number, host=self.dep.host, port=self.dep.port,
                            auth_token_sha256=self.dep.auth_token_sha256,
                            no_auth=self.dep.auth_token_sha256 is None, shadow_fraction=shadow,
                            traffic=self.dep.traffic, cluster_cpus=self.dep.cluster_cpus)
        plan = promotion.autoscaling
        if plan is not None:
            self.log(f"  autoscaling carried over (--traffic-rps {plan.traffic.text}): min_replicas {plan.min_replicas}, "
                     f"max_replicas {plan.max_replicas}, target_ongoing_requests {plan.target_ongoing_requests:g}, "
                     f"from trial #{fit.number}'s measured capacity")
        local = getattr(self.cluster, "temp_dir", None) is not None
        deploy_promotion(self.study, promotion, address=None if local else self.dep.cluster_url,
                         verify_s=self.options.verify_s, tolerance=0.10, log=self.log,
                         auth_token=self.options.auth_token)
        self._load()

    def retune(self, verdict: Verdict) -> int:
        """Start `tuner tune` on a new study, warm-started from this one's Pareto configurations, with
        its search space but server-mode load at the verdict's demand (a lower bound when saturated:
        past capacity the demand cannot be seen); its exit status is watch's."""
        import yaml

        name = f"{self.study.study_name}-retune-{time.strftime('%Y%m%d-%H%M%S')}"
        model = study_model(self.study)
        space_file = self.options.out.with_name(f"{name}.space.yaml")
        space_file.write_text(yaml.safe_dump(self.study.user_attrs["search_space"], sort_keys=False))
        rate = max(1.0, verdict.demand_rps)
        cmd = ["tune", "--study", name, "--warm-start", self.study.study_name, "--space", str(space_file),
               "--trials", str(self.options.retune_trials),
               "--model", model.name if model.source == "builtin" else model.source,
               "--load-mode", "server", "--target-rps", f"{rate:.0f}"]
        if self.options.storage:
            cmd += ["--storage", self.options.storage]
        self.log(f"retuning for {rate:,.0f} inf/s (the demand the {verdict.kind} verdict inferred: past capacity "
                 f"the served rate, or the trial's capacity if higher): tuner {' '.join(cmd)}")
        return subprocess.call([sys.executable, "-m", "tuner", *cmd])
