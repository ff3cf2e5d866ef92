"""Secure defaults, checked on the listening sockets of real servers after a default start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import psutil
import pytest

from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config, write_serve_config
from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model

from helpers import free_port, stop, wait_http

pytestmark = pytest.mark.integration

RAY_INTERNAL = ("gcs_server", "raylet", "agent", "dashboard", "runtime_env", "log_monitor", "monitor", "ray::",
                "/site-packages/ray/",  # a worker (core-worker gRPC) before or without its ray:: title
                "ray.serve.scripts")  # the `serve run` driver tuner serve starts (a Ray driver)


def haproxy_read_only_ports(procs: list[psutil.Process]) -> set[int]:
    """The ports of the read-only stats page and Prometheus exporter that Serve's HAProxy (the
    fast path) binds on all interfaces (Ray 2.60's template: `bind *:PORT`), read from the config
    file each HAProxy runs; its model frontend is another line of that file. README ("Security
    defaults") says so."""
    ports: set[int] = set()
    for p in procs:
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "haproxy" in p.name() and "-f" in cmd:
            section = ""
            for line in Path(cmd[cmd.index("-f") + 1]).read_text().splitlines():
                if line and not line[0].isspace():
                    section = line.strip()
                elif line.strip().startswith("bind") and section in ("listen stats", "frontend prometheus"):
                    ports.add(int(line.split()[1].rsplit(":", 1)[1]))
    return ports



def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listeners(procs: list[psutil.Process]) -> list[tuple[str, int, str]]:
    pids = {p.pid: p for p in procs}
    out = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            try:
                name = " ".join(pids[c.pid].cmdline())[:600]
            except psutil.Error:
                name = "?"
            out.append((c.laddr.ip, c.laddr.port, name))
    return out


def test_optuna_dashboard_listens_on_loopback_only(tmp_path: Path) -> None:
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/tuner.db")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/studies", proc, 60)
        socks = listeners(tree(proc.pid))
        assert socks and all(ip == "127.0.0.1" for ip, _p, _n in socks), socks
    finally:
        stop(proc)


def test_serving_http_and_ray_dashboard_listen_on_loopback(tmp_path: Path) -> None:
    model = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    port = free_port()
    config = make_serve_config(
        TrialConfig("cpu", 4, "fp32", 1, 1),
        ServedModel("digits-cnn", model.variants["fp32"].path, {"x": [1, 8, 8]}),
        ServingOptions(port=port))
    write_serve_config(config, tmp_path / "serve.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "serve", "serve.yaml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc, 150)
        procs = tree(proc.pid)
        socks = listeners(procs)
        read_only = haproxy_read_only_ports(procs)
        assert len(read_only) == 2, read_only  # its own stats and exporter ports (serving.ingress)
        by_port = {p: ip for ip, p, _n in socks}
        assert by_port.get(port) == "127.0.0.1", socks            # Ray Serve's HTTP proxy
        assert by_port.get(8265, "127.0.0.1") == "127.0.0.1", socks  # Ray's dashboard, when it runs
        exposed = [(ip, p, n) for ip, p, n in socks if ip not in ("127.0.0.1", "::1")]
        # Ray's internal services (GCS, raylet, agents) listen on all interfaces: README says so.
        unknown = [(ip, p, n) for ip, p, n in exposed if not any(k in n for k in RAY_INTERNAL)
                   and not (p in read_only and "haproxy" in n)]
        assert not unknown, unknown
        assert all(p not in (port, 8265) for _ip, p, _n in exposed)
    finally:
        stop(proc)
