"""Serving efficiency: what the serving path costs, in one run.

- requests/s of a no-op Ray Serve deployment on each path tried (Ray Serve's default HTTP proxy;
  HAProxy ingress; HAProxy + throughput-optimized, the path tuner's serving clusters run);
- tuner's app serving digits-cnn one-instance requests on each path, against the no-op on the
  default path (target >= 3x) and the no-op on its own path (target >= 0.9x);
- resnet18 fp32 batch 8, 1 replica of 1 thread, served, against a bare ONNX Runtime loop given
  the same core (target >= 0.9x); the cores the stack (proxy, client) used are measured.

Each path needs its own Ray cluster (Serve's mode is read when Ray starts), so each runs in a
child process of this script. Clients: wrk (a C load generator, when installed) with JSON
requests, and tuner's own V2 client (binary tensors, as served trials drive an endpoint).

    python experiments/serving_efficiency.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "default": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
    "haproxy+throughput": {},  # serving_env(): what tuner's serving clusters run
}
CONCURRENCY = 32
NOOP_ANSWER = b'{"model_name":"noop","outputs":[{"name":"y","shape":[1,1],"datatype":"FP32","data":[0.0]}]}'
BODY = {"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}


def _wrk(url: str, seconds: float, body: dict) -> float | None:
    if shutil.which("wrk") is None:
        return None
    script = Path(f"/tmp/serving_efficiency_{os.getpid()}.lua")
    lua_body = json.dumps(json.dumps(body))  # a Lua string literal of the JSON body
    script.write_text(f'wrk.method = "POST"\nwrk.body = {lua_body}\nwrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{int(seconds)}s", "-s", str(script), url],
                         capture_output=True, text=True).stdout
    bad = [line for line in out.splitlines() if "Non-2xx" in line]
    if bad:
        raise SystemExit(f"wrk got errors from {url}: {bad}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[-1])


def _client(base: str, name: str, inputs, seconds: float, instances: int = 1) -> float:
    from serving.client import WindowClient

    client = WindowClient(base, name, inputs, instances=instances, concurrency=CONCURRENCY)
    try:
        client.closed_loop(1.0, 1)
        window = client.closed_loop(seconds, 1)
    finally:
        client.close()
    if window.requests_failed:
        raise SystemExit(f"{window.requests_failed} requests failed at {base}: {window.errors_sample}")
    return len(window.latencies_s) * instances / window.elapsed_s


def _noop_client(base: str, seconds: float) -> float:
    from tuner.models.spec import InputSpec

    return _client(base, "noop", (InputSpec("x", (1, 8, 8), "float32"),), seconds)


def child(path: str, seconds: float) -> dict:
    """One path: a fresh Ray cluster, the no-op, digits-cnn, and (fast path) resnet18."""
    sys.path.insert(0, str(ROOT))
    from serving.deploy import serving_env
    from serving.ingress import new_directory, stop_haproxy

    haproxy_dir = new_directory()
    os.environ.update({**serving_env({}, haproxy_dir=haproxy_dir), **PATHS[path]})
    import ray
    from ray import serve
    from starlette.responses import Response

    from serving.serve_config import ServedModel, ServingOptions, make_serve_config
    from serving.trial_serve import TrialServe, replica_pids, stack_processes
    from tuner.config import TrialConfig
    from tuner.models.inputs import ModelOptions
    from tuner.models.prepare import prepare_model

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _node_ip_address="127.0.0.1")
    port = 8150
    ts = TrialServe(port)
    base = f"http://127.0.0.1:{port}"
    out: dict = {"path": path}

    @serve.deployment(max_ongoing_requests=2 * CONCURRENCY)
    class Noop:
        """Reads the body and answers a fixed V2 response of one row (what a one-instance
        request gets back): the floor of the path."""

        async def __call__(self, request):
            await request.body()
            return Response(NOOP_ANSWER, media_type="application/json")

    serve.run(Noop.bind(), name="noop", route_prefix="/")
    time.sleep(2)
    url = f"{base}/v2/models/noop/infer"
    _wrk(url, 2, BODY)  # warm
    out["noop_wrk_rps"] = _wrk(url, seconds, BODY)
    out["noop_client_rps"] = _noop_client(base, seconds)
    serve.delete("noop")
    digits = prepare_model("digits-cnn", ModelOptions(), {"fp32"}, log=lambda s: None)
    shapes = {"x": [1, 8, 8]}
    for batch in (1, 16, 64):
        config = TrialConfig("cpu", batch, "fp32", 1, 1)
        ts.apply(make_serve_config(config, ServedModel("digits-cnn", digits.variants["fp32"].path, shapes),
                                   ServingOptions(port=port, app_name="digits")))
        url = f"{base}/v2/models/digits-cnn/infer"
        _wrk(url, 2, BODY)
        out[f"digits_b{batch}_wrk_rps"] = _wrk(url, seconds, BODY)
        out[f"digits_b{batch}_client_rps"] = _client(base, "digits-cnn", digits.inputs, seconds)
    serve.delete("digits")
    if path == "haproxy+throughput":
        import psutil

        resnet = prepare_model("resnet18", ModelOptions(), {"fp32"}, log=lambda s: None)
        config = TrialConfig("cpu", 8, "fp32", 1, 1)
        ts.apply(make_serve_config(config, ServedModel("resnet18", resnet.variants["fp32"].path,
                                                       {s.name: list(s.shape) for s in resnet.inputs}),
                                   ServingOptions(port=port, app_name="resnet")))
        _client(base, "resnet18", resnet.inputs, 2.0)  # warm; the digits replica has stopped by now
        pids = {"replica": list(replica_pids()), "proxy": stack_processes()["proxy"], "client": [os.getpid()]}

        def cpu(v: list[int]) -> dict[int, float]:
            out = {}
            for pid in v:
                with contextlib.suppress(psutil.Error):  # gone (a stopped replica, a reloaded HAProxy)
                    out[pid] = sum(psutil.Process(pid).cpu_times()[:2])
            return out

        before = {k: cpu(v) for k, v in pids.items()}
        t0 = time.perf_counter()
        out["resnet18_b8_served_rps"] = _client(base, "resnet18", resnet.inputs, seconds * 2)
        wall = time.perf_counter() - t0
        after = {k: cpu(v) for k, v in pids.items()}
        out["resnet18_stack_cores_used"] = {
            k: round(sum(after[k][p] - before[k][p] for p in before[k] if p in after[k]) / wall, 3) for k in pids}
        serve.delete("resnet")
        out["resnet18_b8_bare_ort_rps"] = bare_ort(resnet.variants["fp32"].path, resnet.inputs, seconds * 2)
    ts.shutdown()
    ray.shutdown()
    stop_haproxy(haproxy_dir)
    return out


def bare_ort(path: str, inputs, seconds: float) -> float:
    """ONNX Runtime back to back at batch 8 on one core, the session options a replica uses."""
    import onnxruntime as ort

    from tuner.evaluators.base import timing_inputs
    from tuner.models.sessions import session_options

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    session = ort.InferenceSession(path, session_options(1), providers=["CPUExecutionProvider"])
    feeds = timing_inputs(tuple(inputs), 8)
    for _ in range(3):
        session.run(None, feeds)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, feeds)
        n += 8
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.seconds)), flush=True)
        return
    sys.path.insert(0, str(ROOT / "experiments"))
    sys.path.insert(0, str(ROOT))
    from common import write_results

    rows = []
    for path in PATHS:
        done = subprocess.run([sys.executable, __file__, "--child", path, "--seconds", str(args.seconds)],
                              capture_output=True, text=True, timeout=1800)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"path {path} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        rows.append(json.loads(line[len("RESULT "):]))
        print(rows[-1], flush=True)
    by = {r["path"]: r for r in rows}
    fast, default = by["haproxy+throughput"], by["default"]
    client = "wrk" if fast["noop_wrk_rps"] is not None else "client"  # wrk when installed
    best_digits = max(fast[f"digits_b{b}_{client}_rps"] for b in (1, 16, 64))
    summary = {
        "noop_rps": {p: r[f"noop_{client}_rps"] for p, r in by.items()},
        "noop_client_rps": {p: r["noop_client_rps"] for p, r in by.items()},
        "client": client,
        f"digits_best_rps_fast_path_{client}": best_digits,
        "digits_vs_noop_default_path": round(best_digits / default[f"noop_{client}_rps"], 3),
        "digits_vs_noop_own_path": round(best_digits / fast[f"noop_{client}_rps"], 3),
        "resnet18_b8_served_vs_bare_ort": round(fast["resnet18_b8_served_rps"] / fast["resnet18_b8_bare_ort_rps"], 3),
        "resnet18_stack_cores_used": fast["resnet18_stack_cores_used"],
        "targets": {"digits_vs_noop_default_path": ">= 3", "digits_vs_noop_own_path": ">= 0.9",
                    "resnet18_b8_served_vs_bare_ort": ">= 0.9"},
        "client_concurrency": CONCURRENCY, "seconds": args.seconds,
    }
    out = write_results("serving_efficiency", rows, summary)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
