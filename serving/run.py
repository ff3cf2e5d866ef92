"""Serve a config in the foreground: Ray's own ``serve run``, plus the endpoint URL once ready.

``serve run`` starts a local Ray cluster (or joins the one `address` names), deploys the
config and blocks, streaming the replicas' logs. It runs in its own process group, so a
terminal's Ctrl-C reaches only us and is forwarded exactly once: SIGINT, SIGTERM and SIGHUP
become one SIGINT, on which ``serve run`` shuts Serve and its Ray cluster down; a second
signal kills the child's whole process group (Ray's daemons included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from serving.auth import check_config_exposure
from serving.deploy import serving_env
from serving.ingress import haproxies_below, new_directory, stop_haproxy
from serving.serve_config_check import load_serve_config
from tuner.errors import field_error

_POLL_INTERVAL_S = 0.5
#: Consecutive 200s on the ready path, READY_GAP_S apart, before the endpoint is announced.
READY_IN_A_ROW = 3
READY_GAP_S = 0.3
#: After those 200s, how long to wait at most for a reloaded HAProxy's old process to stop.
DRAIN_WAIT_MAX_S = 15.0
_SHUTDOWN_GRACE_S = 30.0
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Ray's `serve` CLI, made robust to how we start it: SIGINT gets Python's default handler back
# (a parent started with `nohup` or `&` passes SIGINT on as ignored), and on Linux the child
# asks for SIGINT when its parent dies (PR_SET_PDEATHSIG), so even a SIGKILLed tuner leaves
# `serve run` to shut its cluster down cleanly.
_SERVE_MAIN = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "if sys.platform.startswith('linux'):\n"
    "    import ctypes; ctypes.CDLL(None).prctl(1, signal.SIGINT, 0, 0, 0)\n"
    "from ray.serve.scripts import cli; cli(prog_name='serve')"
)


def endpoint(config: dict[str, Any]) -> tuple[str, str]:
    """The (base URL, model name) a config serves, e.g. ("http://127.0.0.1:8000", "digits")."""
    http = config.get("http_options") or {}
    host, port = http.get("host", "0.0.0.0"), http.get("port", 8000)
    if host in ("0.0.0.0", "", "::"):  # bound to every interface: reach it on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    name = (config["applications"][0].get("args") or {}).get("model_name", "MODEL")
    return f"http://{host}:{port}", name


def _check_port_free(config: dict[str, Any], config_path: Path) -> None:
    http = config.get("http_options") or {}
    host, port = http.get("host", "0.0.0.0"), http.get("port", 8000)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise field_error(
                f"http_options.port in {config_path}", port,
                f"The port cannot be bound on {host} ({exc.strerror}); another server uses it.",
                "Stop that server or set a free port in the config.",
            ) from None


def _announce_when_ready(url: str, name: str, child: subprocess.Popen, timeout_s: float,
                         out: TextIO) -> None:
    """Poll GET /v2/health/ready; print the infer URL after READY_IN_A_ROW 200s in a row.

    One 200 is not enough: while HAProxy reloads its config (the application's routes), its old
    process still accepts some new connections for a moment and answers them 404 (seen in CI: a
    200 on the ready path, then 404 on infer; again on a loaded machine after three 200s in a row).
    So the announcement also waits, up to DRAIN_WAIT_MAX_S, until one HAProxy runs below `child`.
    """
    started, warned, in_a_row = time.monotonic(), False, 0
    draining_since: float | None = None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via http_proxy
    while child.poll() is None:
        try:
            with opener.open(f"{url}/v2/health/ready", timeout=2) as response:
                in_a_row = in_a_row + 1 if response.status == 200 else 0
                if in_a_row >= READY_IN_A_ROW and haproxies_below(child.pid) > 1:
                    draining_since = draining_since or time.monotonic()
                    if time.monotonic() - draining_since < DRAIN_WAIT_MAX_S:
                        in_a_row = READY_IN_A_ROW - 1  # keep polling until the old HAProxy has gone
                if in_a_row >= READY_IN_A_ROW:
                    print(f"\ntuner: ready: POST {url}/v2/models/{name}/infer "
                          f"(metadata: GET {url}/v2/models/{name}; Ctrl-C to stop)", file=out,
                          flush=True)
                    return
        except (urllib.error.URLError, OSError):
            in_a_row = 0
        if in_a_row:
            time.sleep(READY_GAP_S)
            continue
        if not warned and time.monotonic() - started > timeout_s:
            warned = True
            print(f"\ntuner: {url}/v2/health/ready has not answered 200 after {timeout_s:.0f} s; "
                  "see the Ray Serve log above for the cause. Still waiting.", file=out, flush=True)
        time.sleep(_POLL_INTERVAL_S)


def serve_command(config_path: Path, address: str | None = None, num_gpus: int | None = None) -> list[str]:
    """The ``serve run`` command line, with this interpreter (so this venv's Ray runs it).

    `num_gpus`: start a new local cluster that declares this many GPUs (``serve run`` has no
    such flag, and it keeps a Ray that is already initialised, so Ray is started first)."""
    if num_gpus is not None:
        start = f"import ray; ray.init(address='local', namespace='serve', num_gpus={int(num_gpus)})\n"
        return [sys.executable, "-c", start + _SERVE_MAIN, "run", str(config_path)]
    command = [sys.executable, "-c", _SERVE_MAIN, "run", str(config_path)]
    return command + (["--address", address] if address else [])


def serve_foreground(config_path: Path, *, address: str | None = None,
                     ready_timeout_s: float = 120.0, out: TextIO | None = None, num_gpus: int | None = None,
                     no_auth: bool = False) -> int:
    """Validate a Serve config, then run it with ``serve run`` until interrupted.

    Args:
        config_path: the Serve config YAML (from `write_serve_config`).
        address: Ray cluster to deploy to; None lets ``serve run`` decide (the cluster of a
            previous ``ray start``, else a new local one); "local" always starts a new one.
        ready_timeout_s: after this long without readiness, print a hint (and keep waiting).
        out: where the ready line goes (default stdout).
        num_gpus: GPUs a new local cluster declares (None: what Ray detects); only with a
            new local cluster.
        no_auth: serve a config that binds a non-loopback host without a bearer token
            (`serving.auth.check_config_exposure`; ``tuner serve --no-auth``).

    Returns:
        The exit code of ``serve run`` (128 + N if signal N killed it).

    Raises:
        TunerError: the config is invalid, its port is taken, or it binds a non-loopback host
            without a bearer token and `no_auth` is False.
    """
    config_path = Path(config_path).resolve()
    config = load_serve_config(config_path)
    check_config_exposure(config, config_path, no_auth)
    if num_gpus is not None and address not in (None, "local"):
        raise field_error("--num-gpus", num_gpus, f"GPUs are declared by a cluster's nodes when they start, and "
                          f"--ray-address {address!r} names a running cluster.", "Drop --num-gpus, or serve on a new "
                          "local cluster (no --ray-address).")
    if address is None or address == "local":
        _check_port_free(config, config_path)
    url, name = endpoint(config)
    # Own process group: Ctrl-C in a terminal reaches only us; killpg reaches all of Ray.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    # A Ray cluster `serve run` starts runs its workers at nice 0 (see serving_env), with its
    # own HAProxy ports and files (stopped below if a killed proxy leaves its HAProxy behind).
    haproxy_dir = new_directory()
    child = subprocess.Popen(serve_command(config_path, address, num_gpus), stdin=subprocess.DEVNULL,
                             env=serving_env(haproxy_dir=haproxy_dir), **group)
    signals_seen = 0

    def forward(_signum: int, _frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            _signal_child(child, signal.SIGINT)
        else:
            _kill_group(child)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    watcher = threading.Thread(
        target=_announce_when_ready, args=(url, name, child, ready_timeout_s, out or sys.stdout),
        name="tuner-ready-watcher", daemon=True,
    )
    watcher.start()
    try:
        code = child.wait()
    finally:
        if child.poll() is None:  # leaving for another reason (an exception): do not orphan Ray
            _signal_child(child, signal.SIGINT)
            try:
                child.wait(timeout=_SHUTDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop_haproxy(haproxy_dir)
    watcher.join(timeout=5)
    return 128 - code if code < 0 else code


def _signal_child(child: subprocess.Popen, signum: int) -> None:
    if child.poll() is None:
        child.send_signal(signum)


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group: `serve run` and the Ray daemons it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
