"""gRPC ingress: does it raise the floor of tuner's serving path? (issue 13: "try gRPC ingress")

On the path tuner's serving clusters run (HAProxy + Serve's throughput options, each replica
serving its ingress itself), a no-op deployment answers HTTP (experiments/noop_app.py) and a
no-op gRPC service (experiments/grpc_noop.py: unary, raw bytes, nothing decoded) side by side on
one fresh Ray cluster. Both are driven by h2load (nghttp2's C load generator: HTTP/1.1 with
--h1, gRPC over HTTP/2 with prior knowledge), the same 256-byte request body (a one-instance
digits-cnn tensor) and 32 requests in flight, in alternating windows (`--pairs`), because this
machine's speed drifts within minutes. Each window records requests/s and the CPU time per
request of the replica, HAProxy and the client. Before measuring, one call of each kind is checked
by a real client (urllib; grpcio) for the no-op's exact answer; h2load counts a gRPC error inside
an HTTP 200 as a success, so the check is what says the path works.

    python experiments/grpc_floor.py [--seconds 5] [--pairs 3]      # needs h2load (nghttp2-client)

Prints one JSON summary and writes experiments/results/grpc_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import StackCpu

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 32
PAYLOAD = bytes(256)  # a one-instance digits-cnn tensor: 64 float32


def _h2load(args: list[str], seconds: float) -> tuple[float, int]:
    """(requests/s, failed requests) of one h2load window."""
    out = subprocess.run(["h2load", "-D", f"{seconds:g}", "--warm-up-time", "1", *args],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if rps is None or done is None:
        raise RuntimeError(f"h2load printed no rate:\n{out}")
    return float(rps.group(1)), int(done.group(3)) + int(done.group(4))


def _window(kind: str, args: list[str], seconds: float, replica: list[int], proxy: list[int]) -> dict:
    cpu = StackCpu({"replica": replica, "haproxy": proxy}, children="client")
    before = cpu.snapshot()
    t0 = time.perf_counter()
    rps, failed = _h2load(args, seconds)
    wall = time.perf_counter() - t0
    spent = StackCpu.spent(before, cpu.snapshot())
    # Every figure spans the whole call (h2load's 1 s warm-up too): per request over the requests
    # of that span, at the measured rate.
    span_requests = max(rps * wall, 1.0)
    return {"kind": kind, "rps": round(rps, 1), "failed": failed,
            "us_per_request": {role: round(s / span_requests * 1e6, 1) for role, s in spent.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one window (default 5)")
    ap.add_argument("--pairs", type=int, default=3, help="alternating HTTP / gRPC window pairs (default 3)")
    args = ap.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed: apt-get install nghttp2-client")
    sys.path.insert(0, str(ROOT))
    from serving.deploy import serving_env
    from serving.ingress import new_directory, stop_haproxy

    haproxy_dir = new_directory()
    os.environ.update(serving_env({}, haproxy_dir=haproxy_dir))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "experiments"), os.environ.get("PYTHONPATH")]))
    import grpc
    import ray
    from grpc_noop import ANSWER, METHOD, SERVICE
    from grpc_noop import app as grpc_app
    from noop_app import NOOP_ANSWER
    from noop_app import app as http_app
    from ray import serve
    from ray.serve._private.api import serve_start

    from serving.trial_serve import replica_pids, serve_path, stack_processes

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _node_ip_address="127.0.0.1")
    http_port, grpc_port = 8160, 9160
    try:
        serve_start(http_options={"host": "127.0.0.1", "port": http_port},
                    grpc_options={"port": grpc_port, "grpc_servicer_functions": ["grpc_noop.add_noop_servicer"]},
                    proxy_location="HeadOnly")
        serve.run(http_app, name="noop", route_prefix="/noop")
        serve.run(grpc_app, name="grpcnoop", route_prefix="/grpcnoop")
        http_url = f"http://127.0.0.1:{http_port}/noop/v2/models/noop/infer"
        time.sleep(3)  # HAProxy picks the new replicas up
        req = urllib.request.Request(http_url, data=PAYLOAD, headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.read() == NOOP_ANSWER, "the HTTP no-op answered something else"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(f"/{SERVICE}/{METHOD}")
            answer = call(PAYLOAD, metadata=(("application", "grpcnoop"),), timeout=10)
            assert answer == ANSWER, f"the gRPC no-op answered {answer!r}"
        stack = stack_processes()
        body = Path(tempfile.mkdtemp()) / "body"
        body.write_bytes(PAYLOAD)
        framed = body.with_name("framed")
        framed.write_bytes(b"\x00" + struct.pack(">I", len(PAYLOAD)) + PAYLOAD)  # gRPC's length prefix
        kinds = {
            "http1": ["--h1", "-c", str(CONCURRENCY), "-m", "1", "-d", str(body),
                      "-H", "content-type: application/octet-stream", http_url],
            "grpc": ["-c", str(CONCURRENCY), "-m", "1", "-d", str(framed), "-H", "content-type: application/grpc",
                     "-H", "te: trailers", "-H", "application: grpcnoop",
                     f"http://127.0.0.1:{grpc_port}/{SERVICE}/{METHOD}"],
            "grpc_4x8": ["-c", "4", "-m", "8", "-d", str(framed), "-H", "content-type: application/grpc",
                         "-H", "te: trailers", "-H", "application: grpcnoop",
                         f"http://127.0.0.1:{grpc_port}/{SERVICE}/{METHOD}"],
        }
        reps = {"http1": sorted(replica_pids("noop")), "grpc": sorted(replica_pids("grpcnoop"))}
        windows = []
        for _ in range(args.pairs):
            for kind, argv in kinds.items():
                windows.append(_window(kind, argv, args.seconds, reps["http1" if kind == "http1" else "grpc"],
                                       stack["proxy"]))
                print(json.dumps(windows[-1]), flush=True)
        by = {k: [w for w in windows if w["kind"] == k] for k in kinds}
        summary = {
            "path": serve_path(stack), "concurrency": CONCURRENCY, "seconds": args.seconds, "pairs": args.pairs,
            "rps_median": {k: statistics.median(w["rps"] for w in ws) for k, ws in by.items()},
            "failed": {k: sum(w["failed"] for w in ws) for k, ws in by.items()},
            "grpc_vs_http_pairs": [round(g["rps"] / h["rps"], 3) for h, g in zip(by["http1"], by["grpc"])],
            "us_per_request_median": {k: {part: statistics.median(w["us_per_request"][part] for w in ws)
                                          for part in ("replica", "haproxy", "client")} for k, ws in by.items()},
            "windows": windows,
        }
    finally:
        ray.shutdown()
        stop_haproxy(haproxy_dir)
    print(json.dumps({k: v for k, v in summary.items() if k != "windows"}, indent=1))
    out = ROOT / "experiments" / "results" / "grpc_floor.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
