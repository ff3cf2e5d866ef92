"""A client tuner did not write against tuner's own, on a deployed endpoint (issue 13: "a client
that tuner did not write, driving the deployed endpoint like the trial's load, sees throughput
within 10% of the trial's served figure").

In alternating windows on the same deployment: wrk (C, one thread, `--concurrency` connections,
the very body tuner's client sends first: binary V2 tensors, one instance unless `--instances`)
and tuner's own client (`serving.client.WindowClient`, as a served trial drives an endpoint),
with the CPU each client spent per request. With `--trial-rps` (the promoted trial's served
figure, from `tuner show`), each window is also put against it.

    tuner promote --study digits-cnn --out serve_config.yaml --deploy --verify-s 10
    python experiments/independent_client.py --model digits-cnn --trial-rps 1266 [--pairs 6]

Needs wrk on PATH (Debian: apt-get install wrk). Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import write_results, wrk_script


def _inputs(base: str, model: str) -> list:
    from serving.v2.types import InputMeta

    with urllib.request.urlopen(f"{base}/v2/models/{model}", timeout=10) as r:
        meta = json.load(r)
    return [InputMeta(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]]


def _wrk(url: str, script: Path, concurrency: int, seconds: float) -> tuple[float, float]:
    """requests/s and wrk's CPU us per request."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk got errors from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return rps, 1e6 * cpu_s / max(rps * seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the deployment (default: %(default)s)")
    ap.add_argument("--model", default="digits-cnn", help="the model name in /v2/models/NAME")
    ap.add_argument("--instances", type=int, default=1, help="instances per request (default 1)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32, as the trial)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per window")
    ap.add_argument("--pairs", type=int, default=6, help="alternating wrk / tuner windows")
    ap.add_argument("--trial-rps", type=float, help="the promoted trial's served inferences/s")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH: install it (Debian: apt-get install wrk) and run again.")
    from serving.client import WindowClient

    client = WindowClient(args.url, args.model, _inputs(args.url, args.model), instances=args.instances,
                          concurrency=args.concurrency)
    body, headers = client.spec.payloads[0]
    script = Path(f"/tmp/independent_client_{args.model}.lua")
    wrk_script(body, headers, script)
    client.closed_loop(2.0, 1)  # warm: connections open, the replica's batcher busy
    rows = []
    for pair in range(args.pairs):
        wrk_rps, wrk_us = _wrk(client.spec.url, script, args.concurrency, args.seconds)
        cpu0 = time.process_time()
        window = client.closed_loop(args.seconds, 1)
        own_us = 1e6 * (time.process_time() - cpu0) / max(len(window.latencies_s), 1)
        if window.requests_failed:
            raise SystemExit(f"tuner's client: {window.requests_failed} failed: {window.errors_sample}")
        own_rps = len(window.latencies_s) / window.elapsed_s
        row = {"pair": pair, "wrk_inf_per_s": round(wrk_rps * args.instances, 1),
               "tuner_client_inf_per_s": round(own_rps * args.instances, 1),
               "tuner_over_wrk": round(own_rps / wrk_rps, 3),
               "wrk_cpu_us_per_request": round(wrk_us), "tuner_client_cpu_us_per_request": round(own_us)}
        if args.trial_rps:
            row["wrk_over_trial"] = round(wrk_rps * args.instances / args.trial_rps, 3)
        rows.append(row)
        print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    client.close()
    summary = {"url": args.url, "model": args.model, "instances": args.instances, "concurrency": args.concurrency,
               "seconds": args.seconds, "trial_rps": args.trial_rps,
               "median_tuner_over_wrk": statistics.median(r["tuner_over_wrk"] for r in rows)}
    if args.trial_rps:
        summary["median_wrk_over_trial"] = statistics.median(r["wrk_over_trial"] for r in rows)
    print(json.dumps(summary))
    write_results("independent_client", rows, summary)


if __name__ == "__main__":
    main()
