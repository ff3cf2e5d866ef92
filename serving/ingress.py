"""Serve's HAProxy ingress, owned per cluster: its ports and files, and its clean-up.

On the fast path (`serving.deploy.SERVE_FAST_PATH`) Serve's proxy actor runs an HAProxy
subprocess. Ray's defaults give every such HAProxy on a machine the same read-only stats and
Prometheus ports (8404, 9101) and the same files under /tmp/haproxy-serve, and a proxy actor that is
killed (a worker or driver killed with SIGKILL) leaves its HAProxy running, holding those ports:
every later Serve application on the machine then fails to start ("cannot bind socket (Address
already in use) for [0.0.0.0:8404]"). So tuner gives each cluster it starts its own ports and its own
directory, and on shutdown stops any HAProxy that still names that directory.

Ray's template binds the stats page and the exporter on all interfaces (`bind *:PORT`); both are
read-only. The model's HTTP frontend binds where `http_options.host` says (127.0.0.1 by default).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

#: The environment keys of HAProxy's ports and files (Ray >= 2.55).
PORT_KEYS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")
FILE_KEYS = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
#: Ray places files one node-id (56 characters) deeper; a Unix socket path holds 107 bytes.
MAX_DIR_CHARS = 107 - 1 - 56 - 1 - len("metrics.sock")


#: Ports are chosen above Ray's worker ports (10002-19999 by default) and below the kernel's
#: ephemeral range: a port is chosen when a cluster starts and bound when Serve starts, maybe
#: minutes later, and an ephemeral one can be taken meanwhile by any outgoing connection (seen:
#: "cannot bind socket (Address already in use)" for the stats port after a study's trials).
PORT_RANGE = (20000, 32767)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))  # HAProxy binds these on all interfaces: free there, not only on loopback
        except OSError:
            return False
    return True


def _free_port() -> int:
    import random

    high = min(PORT_RANGE[1], _ephemeral_low() - 1)
    for port in random.sample(range(PORT_RANGE[0], high + 1), min(200, max(0, high + 1 - PORT_RANGE[0]))):
        if _bindable(port):
            return port
    with socket.socket() as s:  # no room below the ephemeral range: any free port
        s.bind(("", 0))
        return int(s.getsockname()[1])


def new_directory() -> str:
    """A fresh, short directory for one cluster's HAProxy files."""
    return tempfile.mkdtemp(prefix="tuner-hap-", dir="/tmp")


def haproxy_env(directory: str) -> dict[str, str]:
    """The environment that gives a cluster's HAProxy its own free ports and `directory`."""
    if len(directory) > MAX_DIR_CHARS:
        raise ValueError(f"HAProxy directory {directory!r} is {len(directory)} characters; at most "
                         f"{MAX_DIR_CHARS} fit a Unix socket path below it")
    env = {key: str(_free_port()) for key in PORT_KEYS}
    env.update({key: os.path.join(directory, name) for key, name in FILE_KEYS.items()})
    env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = directory
    env[OWNER_KEY] = directory  # marks these values as tuner's (a child process must not reuse them)
    return env


#: Set beside the values `haproxy_env` chose: they are tuner's, not the user's.
OWNER_KEY = "TUNER_HAPROXY_DIR"
#: Every key `haproxy_env` sets.
ENV_KEYS = (*PORT_KEYS, *FILE_KEYS, "RAY_SERVE_HAPROXY_SERVER_STATE_BASE", OWNER_KEY)


def users_own(env: dict[str, str]) -> dict[str, str]:
    """`env` without the HAProxy values another tuner cluster of this process tree chose (a
    cluster started by `tuner tune` exports them to its workers, and its children inherit them:
    reused, they would collide with that cluster's HAProxy). A user's own values stay."""
    if OWNER_KEY not in env:
        return dict(env)
    return {k: v for k, v in env.items() if k not in ENV_KEYS}


def terminate(victims: list, timeout_s: float) -> None:
    """SIGTERM the processes (psutil.Process), then SIGKILL those still alive after `timeout_s`."""
    import psutil

    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(victims, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


def stop_haproxy(directory: str, remove: bool = True) -> int:
    """Stop every HAProxy whose command line names `directory` (left behind by a killed proxy
    actor); remove the directory. Returns how many were stopped."""
    import psutil

    victims = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = p.info["cmdline"] or []
        if "haproxy" in (p.info["name"] or "") and any(directory in part for part in cmdline):
            victims.append(p)
    terminate(victims, timeout_s=5)
    if remove and Path(directory).name.startswith("tuner-hap-"):
        shutil.rmtree(directory, ignore_errors=True)
    return len(victims)


def sweep_orphans() -> int:
    """Stop tuner's HAProxies whose proxy actor is gone (killed with SIGKILL, so it never stopped
    its subprocess): their parent is no longer a Ray worker. Returns how many were stopped."""
    import psutil

    orphans = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if "haproxy" not in (p.info["name"] or "") or not ("/tmp/tuner-hap-" in cmdline or "/tmp/tuner-serve-" in cmdline):
            continue
        with contextlib.suppress(psutil.Error):
            parent = p.parent()
            if parent is None or "ray" not in " ".join(parent.cmdline()):
                orphans.append(p)
    for p in orphans:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(orphans)


def haproxies_below(pid: int) -> int:
    """How many HAProxy processes run below process `pid` (among its descendants). More than one
    while a reload's old process drains: Serve reloads HAProxy with each change of routes by
    starting a new process (``-sf OLD``), and until the old one has stopped, a new connection may
    still reach it and get its old routes (a 404 for the model just deployed)."""
    import psutil

    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0
    count = 0
    for p in below:
        with contextlib.suppress(psutil.Error):
            count += "haproxy" in p.name()
    return count
