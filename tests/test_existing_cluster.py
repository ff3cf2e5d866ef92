"""`tuner tune --ray-address` joins a cluster started with `ray start` (real, token auth on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port

pytestmark = pytest.mark.integration

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32]}
    batch_size: {type: int, low: 4, high: 8, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measure: engine  # the study loop is under test here, not the serving stack
measurement: {warmup_s: 0.1, window_s: 0.2, min_windows: 2, max_windows: 2}
"""



def test_tune_joins_an_existing_cluster(tmp_path: Path) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--node-ip-address=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        (tmp_path / "space.yaml").write_text(SPACE)
        # Ray sends its token to an explicit address only when asked (README, "Storage and clusters").
        driver_env = {**env, "RAY_AUTH_MODE": "token"}
        deadline = time.monotonic() + 60
        out = None
        while time.monotonic() < deadline:  # the head takes a few seconds to accept drivers
            out = subprocess.run(
                [sys.executable, "-m", "tuner", "tune", "--ray-address", f"127.0.0.1:{port}",
                 "--trials", "2", "--space", "space.yaml", "--finalists", "1"],
                cwd=tmp_path, capture_output=True, text=True, timeout=300, env=driver_env)
            if out.returncode == 0 or "Could not connect" not in out.stderr:
                break
            time.sleep(2)
        assert out is not None and out.returncode == 0, out.stdout + out.stderr
        assert "existing cluster" in out.stdout and "local cluster started by tuner" not in out.stdout
        assert "the Serve mode its nodes were started with" in out.stdout  # served figures say which path
        shown = subprocess.run([sys.executable, "-m", "tuner", "show", "--json"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
        trials = json.loads(shown.stdout)["trials"]
        assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
        assert all(t["metrics"]["estimated"] is False for t in trials)
        # One finalist (--finalists 1) was re-measured served, through this head's own Serve.
        assert sorted(t["level"] for t in trials) == ["engine", "served"], trials
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        forget_cluster(port)


def forget_cluster(port: int) -> None:
    """A killed head leaves /tmp/ray/ray_current_cluster behind, and a later plain
    `ray.init()` or `serve run` would try to join the dead cluster: remove it if it is ours."""
    marker = Path("/tmp/ray/ray_current_cluster")
    try:
        if marker.read_text().strip().endswith(f":{port}"):
            marker.unlink()
    except OSError:
        pass
