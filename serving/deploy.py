"""Deploy a Serve config to a running Ray cluster, detached from the CLI, and wait for it.

tuner uses Ray's own tools: ``ray start`` for a local serving cluster and the dashboard's Serve
REST API (what ``serve deploy`` / ``serve status`` call) for deployments. A new config for the running
application is a rolling update with ``max_surge_percent: 100``: the new replicas start beside
the old ones and take traffic once ready, then the old ones drain (blue/green per replica), so
a switch fails no request. That needs room for both versions at once: the local serving
cluster tuner starts declares twice this machine's cores as Ray CPUs for that reason, and runs
Ray's workers at nice 0 (see `local_cluster`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from serving.ingress import haproxy_env, sweep_orphans, terminate, users_own
from serving.metrics import LATENCY_BOUNDARIES_MS
from tuner.errors import TunerError

STATE_FILE = "serve-cluster.json"


@dataclass(frozen=True)
class ServeCluster:
    """A Ray cluster to deploy to: its GCS address and dashboard URL (Serve's REST API)."""

    address: str
    dashboard_url: str
    temp_dir: str | None = None  # set when tuner started it (its processes live there)
    num_gpus: int | None = None  # GPUs it was started to declare (None: what Ray detected)
    metrics_url: str | None = None  # Ray's Prometheus endpoint on its head node, when tuner knows it


def _env() -> dict[str, str]:
    # Ray sends its auth token to an explicit address only in token mode.
    return {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}


def serving_env(base: dict[str, str] | None = None, haproxy_dir: str | None = None) -> dict[str, str]:
    """The environment for a process that starts a Ray cluster for serving: Ray's workers
    (Serve's proxy, controller and replicas) at nice 0 instead of Ray's default 15. At 15 any
    ordinary process, a client or the `tuner` CLI itself, takes the CPU from them; on 2 cores
    that turned a new replica's start-up into seconds of stalled serving (1476 of 2166
    requests failed in two promote + rollback rounds under a 40 req/s client). A user's own
    RAY_worker_niceness wins.

    Serve runs in its high-throughput mode (see `SERVE_FAST_PATH`); with `haproxy_dir`, the
    cluster's HAProxy gets its own free ports and files there (`serving.ingress`). A user's own
    values win."""
    own = haproxy_env(haproxy_dir) if haproxy_dir else {}
    given = dict(os.environ if base is None else base)
    return {"RAY_worker_niceness": "0", **SERVE_FAST_PATH, **telemetry_env(), **own,
            **(users_own(given) if own else given)}


def telemetry_env() -> dict[str, str]:
    """Ray's metrics export as on every cluster tuner starts, the tuning one included: a served
    trial then runs beside the same metrics work as the deployment it predicts (Ray's metrics
    agent spends CPU per exported observation, in a burst at each export; see `serving.metrics`)."""
    return {"RAY_metrics_report_interval_ms": str(METRICS_REPORT_INTERVAL_MS),
            "RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS": ",".join(f"{b:g}" for b in LATENCY_BOUNDARIES_MS)}


#: Ray Serve's high-throughput path (Ray >= 2.55): HAProxy (C) as the HTTP ingress, each replica
#: serving HTTP itself (direct ingress), gRPC between Serve's own actors, no per-request log to
#: stderr. Measured here (experiments/serving_efficiency.py): see docs/measurement.md.
#: HAProxy's per-request metrics log is off (CPU per request); the application's own metrics
#: still reach Ray's metrics endpoint.
#: A stopping replica keeps answering for 2 s (Ray's default: 30 s, for remote load balancers) so
#: HAProxy, on the same machine, drops it first; an update that restarts replicas then takes ~3 s
#: instead of 31 s here.
SERVE_FAST_PATH = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                   "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


#: How often Ray's processes on the serving cluster export their metrics (Ray's default: 10 s),
#: so that `tuner watch` sees a change within seconds; Serve's request latency histogram gets the
#: application's finer buckets (`serving.metrics`). A user's own values win.
METRICS_REPORT_INTERVAL_MS = 2000


def _ray_bin(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state_path() -> Path:
    from tuner.models.cache import cache_root

    return cache_root() / STATE_FILE


def _alive(cluster: ServeCluster) -> bool:
    try:
        status(cluster)
        return True
    except TunerError:
        return False


def local_cluster(start: bool = True, num_gpus: int | None = None) -> ServeCluster | None:
    """tuner's local serving cluster: the one it started before if still alive, else a new one
    (declaring `num_gpus` GPUs when given; by default the GPUs Ray detects)."""
    state = _state_path()
    if state.exists():
        try:
            known = ServeCluster(**json.loads(state.read_text()))
            if _alive(known):
                if num_gpus is not None and known.num_gpus != num_gpus:
                    raise TunerError(
                        f"Got --num-gpus {num_gpus}, but tuner's local serving cluster is running, started with "
                        f"{'the GPUs Ray detected' if known.num_gpus is None else f'--num-gpus {known.num_gpus}'}. "
                        "Stop it first (tuner undeploy), or drop --num-gpus to deploy to it as it is.")
                return known
        except (ValueError, TypeError, subprocess.TimeoutExpired):
            pass
    if not start:
        return None
    sweep_orphans()
    port, dash, metrics = _free_port(), _free_port(), _free_port()
    temp_dir = f"/tmp/tuner-serve-{os.getuid()}-{port}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cmd = [_ray_bin("ray"), "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
           "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--num-cpus={2 * cores}",
           f"--temp-dir={temp_dir}", f"--metrics-export-port={metrics}",
           "--disable-usage-stats"] + ([f"--num-gpus={num_gpus}"] if num_gpus is not None else [])
    # HAProxy's files under temp_dir: stop_local_cluster's sweep of temp_dir reaches it too.
    env = serving_env(_env(), haproxy_dir=f"{temp_dir}/hap")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    if out.returncode != 0:
        raise TunerError(f"Could not start a local Ray cluster for serving: {out.stderr.strip()[-600:]}")
    cluster = ServeCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", temp_dir, num_gpus,
                           f"http://127.0.0.1:{metrics}/metrics")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(asdict(cluster)))
    return cluster


def stop_local_cluster() -> bool:
    """Stop tuner's local serving cluster (only its processes). Returns whether one ran."""
    state = _state_path()
    if not state.exists():
        return False
    cluster = ServeCluster(**json.loads(state.read_text()))
    subprocess.run([_ray_bin("serve"), "shutdown", "-y", "--address", cluster.dashboard_url],
                   capture_output=True, text=True, timeout=120, env=_env())
    if cluster.temp_dir:
        _kill_processes_under(cluster.temp_dir)
    state.unlink(missing_ok=True)
    return True


def _kill_processes_under(marker: str) -> None:
    """Kill the processes of the cluster whose temp dir is `marker` (`processes_of`)."""
    terminate(processes_of(marker), timeout_s=15)


def processes_of(temp_dir: str) -> list:
    """The processes (psutil) of the Ray cluster whose temp dir is `temp_dir`: those whose command
    line names it, and those holding a file open under it. Ray renames its agents
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) and starts its client server with no temp
    dir on the command line; only their open log files say which cluster they belong to. Matching
    the command line alone left those three running after `tuner undeploy` (the dashboard agent had
    taken 43 s of CPU in the deployment's 8 minutes)."""
    import psutil

    under = temp_dir.rstrip("/") + "/"
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid == os.getpid():
            continue
        if any(temp_dir in part for part in (p.info["cmdline"] or [])):
            found.append(p)
            continue
        with contextlib.suppress(psutil.Error):
            if any(f.path.startswith(under) for f in p.open_files()):
                found.append(p)
    return found


SERVE_API = "/api/serve/applications/"


def _auth_headers() -> dict[str, str]:
    """Ray 2.60 clusters check a bearer token on the dashboard's REST API: the same token the
    `serve` CLI sends (RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _api(cluster: ServeCluster, method: str, body: dict | None = None, timeout_s: float = 30.0) -> dict:
    """One call to Serve's REST API, in this process: polling with the `serve status` CLI
    started a Python process (1-2 s of CPU) per poll, enough to stall a 2-core machine's
    serving while a new version comes up."""
    import requests

    url = cluster.dashboard_url.rstrip("/") + SERVE_API
    try:
        r = requests.request(method, url, json=body, headers=_auth_headers(), timeout=timeout_s)
    except requests.RequestException as exc:
        raise TunerError(f"Ray's dashboard at {cluster.dashboard_url} did not answer ({exc}). Is the serving "
                         "cluster running? `ray status --address ...` tells; `tuner undeploy` resets tuner's own.") from None
    if r.status_code == 401:
        raise TunerError(f"Ray's dashboard at {cluster.dashboard_url} refused tuner's token (HTTP 401): set "
                         "RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on its head node).")
    if r.status_code >= 400:
        raise TunerError(f"{method} {url} failed with HTTP {r.status_code}: {r.text.strip()[-600:]}")
    return r.json() if r.content and method == "GET" else {}


def status(cluster: ServeCluster) -> dict:
    """Serve's state: {"applications": {name: {"status", "message", "deployments": {...}}}}."""
    return _api(cluster, "GET")


def running_replicas(cluster: ServeCluster, app_name: str) -> dict[str, int]:
    """RUNNING replicas of each deployment of `app_name` (what Serve's autoscaler changes)."""
    deployments = status(cluster).get("applications", {}).get(app_name, {}).get("deployments", {})
    return {name: sum(r.get("state") == "RUNNING" for r in d.get("replicas") or []) for name, d in deployments.items()}


def deploy(cluster: ServeCluster, config_path: Path, app_name: str, timeout_s: float = 300.0) -> float:
    """Deploy the config (what `serve deploy` does), then wait until the application runs it;
    returns seconds taken."""
    t0 = time.monotonic()
    config = yaml.safe_load(Path(config_path).read_text())
    _api(cluster, "PUT", config, timeout_s=120)
    # The controller applies a new config asynchronously: first wait for the application to
    # leave its old RUNNING state (a config identical to the running one never does).
    started = time.monotonic()
    while time.monotonic() - started < 10.0:
        if status(cluster).get("applications", {}).get(app_name, {}).get("status") != "RUNNING":
            break
        time.sleep(0.5)
    last = None
    while time.monotonic() - t0 < timeout_s:
        app = status(cluster).get("applications", {}).get(app_name, {})
        last = app
        deps = app.get("deployments", {})
        if app.get("status") == "RUNNING" and deps and all(d.get("status") == "HEALTHY" for d in deps.values()):
            return time.monotonic() - t0
        if app.get("status") == "DEPLOY_FAILED":
            raise TunerError(f"The deployment failed: {app.get('message', '')[-800:]}")
        time.sleep(1.0)
    raise TunerError(
        f"The application was not running after {timeout_s:.0f} s (last status: {json.dumps(last)[:600]}). "
        "A new version starts beside the old one: the cluster needs room for both (Ray CPUs).")
