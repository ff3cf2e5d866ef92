"""Serving efficiency: what the serving path costs, in one run.

- requests/s of a no-op Ray Serve deployment on each path tried (Ray Serve's default HTTP proxy;
  HAProxy ingress; HAProxy + throughput-optimized, the path tuner's serving clusters run);
- tuner's app serving digits-cnn one-instance requests on each path, against the no-op on the
  default path (target >= 3x) and the no-op on its own path (target >= 0.9x), with wrk sending JSON
  bodies, and on the fast path at batch 16 again with binary bodies (what tuner's client sends);
- resnet18 fp32 batch 8, 1 replica of 1 thread, served, against a bare ONNX Runtime loop given
  one core (target >= 0.9x), in alternating windows (`--pairs`); the cores the stack (proxy,
  client) used are measured;
- the fast path's gRPC ingress: a no-op gRPC service against the HTTP no-op, both driven by h2load
  (experiments/grpc_floor.py; run when h2load is installed).

The no-op runs beside tuner's app on the same cluster (at /noop), and the two are measured in
alternating windows (`--pairs` pairs per batch size): this VM's speed drifts by 10-30% within
minutes, so a ratio of two windows taken minutes apart measures the drift as much as the app.
Each window also records the CPU time each process of the stack spent per request (the
replica, HAProxy or Serve's proxy, wrk), which drifts less than a rate and says where the time goes.

Each path needs its own Ray cluster (Serve's mode is read when Ray starts), so each runs in a
child process of this script. Clients: wrk (a C load generator, when installed) with JSON
requests, and tuner's own V2 client (binary tensors, as served trials drive an endpoint).

    python experiments/serving_efficiency.py [--seconds 5] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import StackCpu

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "default": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "haproxy+throughput": {},  # serving_env(): what tuner's serving clusters run
}
CONCURRENCY = 32
BATCHES = (1, 16, 64)
BODY = {"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}


def _wrk(url: str, seconds: float, body: bytes | dict, headers: dict[str, str] | None = None) -> float | None:
    """wrk's requests/s on `url` with `body` (a dict: sent as JSON)."""
    if shutil.which("wrk") is None:
        return None
    from common import wrk_script

    if isinstance(body, dict):
        body, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    script = Path(f"/tmp/serving_efficiency_{os.getpid()}.lua")
    wrk_script(body, headers or {}, script)
    out = subprocess.run(["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{int(seconds)}s", "-s", str(script), url],
                         capture_output=True, text=True).stdout
    bad = [line for line in out.splitlines() if "Non-2xx" in line]
    if bad:
        raise SystemExit(f"wrk got errors from {url}: {bad}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[-1])


def _binary_body() -> tuple[bytes, dict[str, str]]:
    """BODY as tuner's client sends it: binary tensor data, binary outputs asked for."""
    import numpy as np

    from serving.v2.wire import encode_infer_request

    encoded = encode_infer_request({"x": np.full((1, 1, 8, 8), 0.5, np.float32)}, binary=True, binary_outputs=True)
    return encoded.body, encoded.headers


def _client(base: str, name: str, inputs, seconds: float, instances: int = 1, prefix: str = "") -> float:
    from serving.client import WindowClient

    client = WindowClient(base + prefix, name, inputs, instances=instances, concurrency=CONCURRENCY)
    try:
        client.closed_loop(1.0, 1)
        window = client.closed_loop(seconds, 1)
    finally:
        client.close()
    if window.requests_failed:
        raise SystemExit(f"{window.requests_failed} requests failed at {base}: {window.errors_sample}")
    return len(window.latencies_s) * instances / window.elapsed_s


def _window(url: str, seconds: float, binary: tuple[bytes, dict[str, str]] | None = None) -> tuple[float, dict[str, float]]:
    """One wrk window (BODY as JSON, or `binary`: a body and its headers, as `_binary_body` makes
    them): requests/s, and CPU microseconds per request of each stack role."""
    from serving.trial_serve import replica_pids, stack_processes

    cpu = StackCpu({"noop_replica": sorted(replica_pids("noop")), "app_replica": sorted(replica_pids("digits")),
                    "proxy": stack_processes()["proxy"]}, children="wrk")
    before = cpu.snapshot()
    rps = _wrk(url, seconds, *binary) if binary else _wrk(url, seconds, BODY)
    spent = StackCpu.spent(before, cpu.snapshot())
    n = (rps or 0.0) * int(seconds)
    return rps or 0.0, {k: round(v / n * 1e6, 1) if n else None for k, v in spent.items()}


def child(path: str, seconds: float, pairs: int) -> dict:
    """One path: a fresh Ray cluster, the no-op beside digits-cnn in alternating windows, and (fast
    path) resnet18."""
    sys.path.insert(0, str(ROOT))
    from serving.deploy import serving_env
    from serving.ingress import new_directory, stop_haproxy

    haproxy_dir = new_directory()
    os.environ.update({**serving_env({}, haproxy_dir=haproxy_dir), **PATHS[path]})
    # Serve's replicas import the no-op from its config entry: experiments/ on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "experiments"), os.environ.get("PYTHONPATH")]))
    import ray
    from noop_app import ENTRY as NOOP

    from serving.options import ServedModel, ServingOptions
    from serving.serve_config import make_serve_config
    from serving.trial_serve import TrialServe, replica_pids, stack_processes
    from tuner.config import TrialConfig
    from tuner.models.inputs import ModelOptions
    from tuner.models.prepare import prepare_model
    from tuner.models.spec import InputSpec

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _node_ip_address="127.0.0.1")
    port = 8150
    ts = TrialServe(port)
    base = f"http://127.0.0.1:{port}"
    noop_url, app_url = f"{base}/noop/v2/models/noop/infer", f"{base}/v2/models/digits-cnn/infer"
    out: dict = {"path": path}
    digits = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    shapes = {"x": [1, 8, 8]}
    noops = []
    for batch in BATCHES:
        config = TrialConfig("cpu", batch, "fp32", 1, 1)
        ts.apply(make_serve_config(config, ServedModel("digits-cnn", digits.variants["fp32"].path, shapes),
                                   ServingOptions(port=port, app_name="digits")), beside=[NOOP])
        for url in (noop_url, app_url):
            _wrk(url, 2, BODY)  # warm
        windows = [(_window(noop_url, seconds), _window(app_url, seconds)) for _ in range(pairs)]
        noops += [n[0] for n, _ in windows]
        out[f"digits_b{batch}_wrk_rps"] = statistics.median(a[0] for _, a in windows)
        out[f"digits_b{batch}_vs_noop_pairs"] = [round(a[0] / n[0], 3) for n, a in windows if n[0]]
        out[f"digits_b{batch}_cpu_us_per_request"] = {k: statistics.median(a[1][k] for _, a in windows)
                                                      for k in windows[0][1][1]}
        out[f"noop_b{batch}_cpu_us_per_request"] = {k: statistics.median(n[1][k] for n, _ in windows)
                                                    for k in windows[0][0][1]}
        out[f"digits_b{batch}_client_rps"] = _client(base, "digits-cnn", digits.inputs, seconds)
        if path == "haproxy+throughput" and batch == 16:  # the same pairs with binary bodies
            body = _binary_body()
            binary = [(_window(noop_url, seconds, body), _window(app_url, seconds, body)) for _ in range(pairs)]
            out["digits_b16_binary_wrk_rps"] = statistics.median(a[0] for _, a in binary)
            out["digits_b16_binary_vs_noop_pairs"] = [round(a[0] / n[0], 3) for n, a in binary if n[0]]
            out["digits_b16_binary_cpu_us_per_request"] = {k: statistics.median(a[1][k] for _, a in binary)
                                                           for k in binary[0][1][1]}
    out["noop_wrk_rps"] = statistics.median(noops) if noops and noops[0] else None
    out["noop_client_rps"] = _client(base, "noop", (InputSpec("x", (1, 8, 8), "float32"),), seconds, prefix="/noop")
    ts.remove("digits")
    ts.remove("noop")
    if path == "haproxy+throughput":
        resnet = prepare_model("resnet18", ModelOptions(), {"fp32"}, log=lambda s: None)
        config = TrialConfig("cpu", 8, "fp32", 1, 1)
        ts.apply(make_serve_config(config, ServedModel("resnet18", resnet.variants["fp32"].path,
                                                       {s.name: list(s.shape) for s in resnet.inputs}),
                                   ServingOptions(port=port, app_name="resnet")))
        _client(base, "resnet18", resnet.inputs, 2.0)  # warm; the digits replica has stopped by now
        cpu = StackCpu({"replica": sorted(replica_pids("resnet")), "proxy": stack_processes()["proxy"],
                        "client": [os.getpid()]})
        bare = BareOrt(resnet.variants["fp32"].path, resnet.inputs)
        # Alternating windows, served then bare (the replica idles meanwhile), as for digits above:
        # two windows taken minutes apart would measure this VM's drift as much as the stack.
        served_rps, bare_rps, cores_used = [], [], []
        for _ in range(pairs):
            before, t0 = cpu.snapshot(), time.perf_counter()
            served_rps.append(_client(base, "resnet18", resnet.inputs, seconds * 2))
            wall = time.perf_counter() - t0
            cores_used.append({k: v / wall for k, v in StackCpu.spent(before, cpu.snapshot()).items()})
            bare_rps.append(bare.rate(seconds * 2))
        out["resnet18_b8_served_rps"] = statistics.median(served_rps)
        out["resnet18_b8_bare_ort_rps"] = statistics.median(bare_rps)
        out["resnet18_b8_vs_bare_pairs"] = [round(a / b, 3) for a, b in zip(served_rps, bare_rps)]
        out["resnet18_stack_cores_used"] = {k: round(statistics.median(c[k] for c in cores_used), 3)
                                            for k in cores_used[0]}
        ts.remove("resnet")
    ts.shutdown()
    ray.shutdown()
    stop_haproxy(haproxy_dir)
    return out


class BareOrt:
    """ONNX Runtime back to back at batch 8 on one core (the first), the session options a
    replica uses; each window runs in a thread pinned to that core, so this process's other
    threads (the client's) keep every core."""

    def __init__(self, path: str, inputs) -> None:
        import onnxruntime as ort

        from tuner.evaluators.base import timing_inputs
        from tuner.models.sessions import session_options

        self.core = sorted(os.sched_getaffinity(0))[0]
        self.session = ort.InferenceSession(path, session_options(1), providers=["CPUExecutionProvider"])
        self.feeds = timing_inputs(tuple(inputs), 8)
        self.rate(0.5)  # warm: first runs, allocator growth

    def rate(self, seconds: float) -> float:
        """Instances per second over a window of `seconds`."""
        import threading

        got: list[float] = []

        def loop() -> None:
            os.sched_setaffinity(0, {self.core})  # this thread alone
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                self.session.run(None, self.feeds)
                n += 8
            got.append(n / (time.perf_counter() - t0))

        worker = threading.Thread(target=loop, name="bare-ort")
        worker.start()
        worker.join()
        return got[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measuring window")
    parser.add_argument("--pairs", type=int, default=3, help="alternating no-op / app windows per batch size")
    parser.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.seconds, args.pairs)), flush=True)
        return
    sys.path.insert(0, str(ROOT / "experiments"))
    sys.path.insert(0, str(ROOT))
    from common import write_results

    rows = []
    for path in PATHS:
        done = subprocess.run([sys.executable, __file__, "--child", path, "--seconds", str(args.seconds),
                               "--pairs", str(args.pairs)],
                              capture_output=True, text=True, timeout=1800)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"path {path} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        rows.append(json.loads(line[len("RESULT "):]))
        print(rows[-1], flush=True)
    grpc = None  # gRPC ingress on the fast path, against HTTP (experiments/grpc_floor.py: needs h2load)
    if shutil.which("h2load"):
        done = subprocess.run([sys.executable, str(ROOT / "experiments" / "grpc_floor.py"), "--seconds",
                               str(args.seconds), "--pairs", str(args.pairs)], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"grpc_floor.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        floor = json.loads((ROOT / "experiments" / "results" / "grpc_floor.json").read_text())
        grpc = {k: floor[k] for k in ("rps_median", "grpc_vs_http_pairs", "us_per_request_median")}
    by = {r["path"]: r for r in rows}
    fast, default = by["haproxy+throughput"], by["default"]
    client = "wrk" if fast["noop_wrk_rps"] is not None else "client"  # wrk when installed
    best = max(BATCHES, key=lambda b: fast[f"digits_b{b}_{client}_rps"])
    best_digits = fast[f"digits_b{best}_{client}_rps"]
    # Own path: the median of the alternating pairs' ratios (with wrk), else one window of each.
    own = (statistics.median(fast[f"digits_b{best}_vs_noop_pairs"]) if client == "wrk"
           else best_digits / fast["noop_client_rps"])
    summary = {
        "noop_rps": {p: r[f"noop_{client}_rps"] for p, r in by.items()},
        "noop_client_rps": {p: r["noop_client_rps"] for p, r in by.items()},
        "client": client,
        f"digits_best_rps_fast_path_{client}": best_digits,
        "digits_best_batch": best,
        "digits_vs_noop_default_path": round(best_digits / default[f"noop_{client}_rps"], 3),
        "digits_vs_noop_own_path": round(own, 3),
        "digits_vs_noop_own_path_pairs": fast.get(f"digits_b{best}_vs_noop_pairs"),
        # wrk's JSON bodies above; the same pairs at batch 16 with binary bodies (tuner's client's default):
        "digits_b16_binary_vs_noop_own_path": (round(statistics.median(fast["digits_b16_binary_vs_noop_pairs"]), 3)
                                               if fast.get("digits_b16_binary_vs_noop_pairs") else None),
        "digits_b16_binary_vs_noop_pairs": fast.get("digits_b16_binary_vs_noop_pairs"),
        "digits_b16_binary_cpu_us_per_request": fast.get("digits_b16_binary_cpu_us_per_request"),
        "cpu_us_per_request_fast_path": {"noop": fast.get(f"noop_b{best}_cpu_us_per_request"),
                                         f"digits_b{best}": fast.get(f"digits_b{best}_cpu_us_per_request")},
        # the median of the alternating pairs' ratios
        "resnet18_b8_served_vs_bare_ort": round(statistics.median(fast["resnet18_b8_vs_bare_pairs"]), 3),
        "resnet18_b8_vs_bare_pairs": fast["resnet18_b8_vs_bare_pairs"],
        "resnet18_stack_cores_used": fast["resnet18_stack_cores_used"],
        "noop_grpc_vs_http_fast_path": grpc,
        "targets": {"digits_vs_noop_default_path": ">= 3", "digits_vs_noop_own_path": ">= 0.9",
                    "resnet18_b8_served_vs_bare_ort": ">= 0.9"},
        "client_concurrency": CONCURRENCY, "seconds": args.seconds, "pairs": args.pairs,
    }
    out = write_results("serving_efficiency", rows, summary)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
