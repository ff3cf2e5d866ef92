"""Test helpers for real servers: a tiny MatMul ONNX model, and a Serve config run with
`serve_foreground` in its own session (so that stopping it can check nothing was left behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import requests
from onnx import TensorProto, helper, numpy_helper

from serving.serve_config import write_serve_config

READY_TIMEOUT_S = 120.0


def new_client() -> requests.Session:
    """A session that talks to 127.0.0.1 directly even where http_proxy is set."""
    session = requests.Session()
    session.trust_env = False
    return session


client = new_client()


def matmul_model(path: Path, x_shape: list, elem: int = TensorProto.FLOAT) -> np.ndarray:
    """y = x @ w, x of `x_shape` (symbolic dims as strings); returns w."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    np_dtype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, [x_shape[0], 3])],
        [numpy_helper.from_array(w.astype(np_dtype), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return w


def session_pids(sid: int) -> list[int]:
    """Live processes in session `sid`: the server we started and everything it spawned."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session
            pids.append(int(entry))
    return pids


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    log: Path

    def stop(self) -> tuple[int, list[int]]:
        """SIGINT (as Ctrl-C would), then kill leftovers; returns (exit code, leftover pids)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # our own group: the serve_foreground process
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + 30
        while (left := session_pids(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:  # only processes of the session this test created
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.proc.returncode, left


def start_server(config: dict, work: Path, ready_timeout_s: float = READY_TIMEOUT_S) -> Server:
    """Write `config`, run it with `serve_foreground` in a new session, wait for readiness."""
    config_path = write_serve_config(config, work / "serve_config.yaml", comment="test server")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = work / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from serving.run import serve_foreground; "
             "sys.exit(serve_foreground(Path(sys.argv[1]), address='local'))", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    srv = Server(proc, f"http://127.0.0.1:{config['http_options']['port']}", log)
    try:
        deadline = time.monotonic() + ready_timeout_s
        # Ready when it says so, as a user waits: serve_foreground announces the endpoint after
        # 200s in a row on the ready path and no reloaded HAProxy still draining (one 200 alone
        # can come before a 404 from the old HAProxy's routes).
        while "tuner: ready: POST" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"server exited early:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-4000:]}"
            time.sleep(0.2)
        return srv
    except BaseException:
        srv.stop()
        raise


def one_trial_study(tmp_path: Path, name: str, space_yaml: str, config, extra_attrs: dict | None = None) -> str:
    """A study (SQLite under `tmp_path`) holding one COMPLETE served trial of `config` on a MatMul
    model: 400 inf/s, p50/p95/p99 10/20/25 ms, $0.01/M; `extra_attrs` are added to its user
    attributes. No Ray is started. Returns the storage URL."""
    import optuna
    import yaml

    from tuner.cluster_info import ClusterInfo
    from tuner.search.suggest import params_for, suggest
    from tuner.spec.space import SearchSpace

    storage = f"sqlite:///{tmp_path / 'tuner.db'}"
    model = tmp_path / "m.onnx"
    matmul_model(model, ["N", 4])
    s = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize", "minimize"])
    space = SearchSpace.model_validate(yaml.safe_load(space_yaml))
    s.set_user_attr("search_space", space.model_dump(mode="json", exclude_none=True))
    s.set_user_attr("model", {"name": "m", "source": str(model), "inputs": [{"name": "x", "shape": [4],
                                                                             "dtype": "float32"}],
                              "accuracy_metric": "fidelity", "accuracy_description": "test",
                              "variants": {"fp32": {"precision": "fp32", "path": str(model), "sha256": "0",
                                                    "accuracy": 1.0}}})
    s.enqueue_trial(params_for(space, config))
    trial = s.ask()
    assert suggest(space, trial, ClusterInfo(total_cpus=8, max_node_cpus=8)) == config  # sets its params
    metrics = {"throughput_rps": 400.0, "latency_p50_ms": 10.0, "latency_p95_ms": 20.0, "latency_p99_ms": 25.0,
               "accuracy": 1.0, "cost_usd_per_million": 0.01, "estimated": False}
    for key, value in {**metrics, "config": config.to_dict(), "feasible": True, "artifact": str(model),
                       "level": "served", **(extra_attrs or {})}.items():
        trial.set_user_attr(key, value)
    s.tell(trial, [400.0, 20.0, 0.01])
    return storage


def metrics_texts(srv: Server, timeout_s: float = 1.0) -> dict[int, str]:
    """Ray's /metrics texts by port, of the server's listening ports: Ray picks them at start-up
    (``--metrics-export-port=0`` means 'pick one'), and the dashboard serves its own metrics on
    another such port, so every one is tried."""
    import psutil

    ports = set()
    for pid in session_pids(srv.proc.pid):
        try:
            ports |= {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN}
        except (psutil.Error, OSError):
            continue
    texts = {}
    for port in sorted(ports):
        try:
            text = client.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s).text
        except requests.RequestException:
            continue
        if "# TYPE ray_" in text:
            texts[port] = text
    return texts
