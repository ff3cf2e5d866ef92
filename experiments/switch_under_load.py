"""Switch under load: a client sends Poisson requests throughout while tuner promotes another
trial (--deploy) and then rolls back. Counts every failed request and when it failed, relative
to the phases (before, during the promotion, between, during the rollback, after).
Target (issue 6): zero failed requests.

    python experiments/switch_under_load.py [--rps 40] [--rounds 1] [--verify-s 0]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from common import write_results

from serving.loadgen import drive_background
from tuner.models.spec import InputSpec

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, int8]}
    batch_size: {type: int, low: 1, high: 16, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measurement: {warmup_s: 0.1, window_s: 0.5, min_windows: 2, max_windows: 3, target_requests: 200}
"""


def tuner(work: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "tuner", *args], cwd=work, capture_output=True, text=True,
                         timeout=900)
    if out.returncode not in (0, 1):
        sys.exit(f"tuner {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=40.0, help="the client's request rate (Poisson)")
    parser.add_argument("--rounds", type=int, default=1, help="promote + rollback rounds under one client")
    parser.add_argument("--verify-s", type=float, default=0.0, help="verification seconds of each promotion")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="switch-"))
    (work / "space.yaml").write_text(SPACE)
    if not (work / "tuner.db").exists():
        tuner(work, "tune", "--trials", "4", "--space", "space.yaml", "--finalists", "0")
    port = free_port()
    first = tuner(work, "promote", "--study", "digits-cnn", "--out", "a.yaml", "--port", str(port),
                  "--deploy", "--verify-s", "0")
    print(first.stdout.strip())
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
    current = study.user_attrs["promotions"][-1]["trial"]
    other = next(t.number for t in study.trials if t.state.name == "COMPLETE" and t.number != current
                 and t.user_attrs["config"]["batch_size"] != study.trials[current].user_attrs["config"]["batch_size"])
    inputs = [InputSpec("x", (1, 8, 8), "float32")]
    phases: list[tuple[str, float, float]] = []
    try:
        with drive_background(f"http://127.0.0.1:{port}", "digits-cnn", inputs, "server", 1,
                              target_rps=args.rps) as load:
            t_start = time.monotonic()
            time.sleep(3)
            for r in range(args.rounds):
                t0 = time.monotonic()
                out = tuner(work, "promote", "--study", "digits-cnn", "--trial", str(other), "--out", "b.yaml",
                            "--port", str(port), "--deploy", "--verify-s", str(args.verify_s))
                phases.append((f"promote #{other} (round {r + 1})", t0 - t_start, time.monotonic() - t_start))
                print(out.stdout.strip())
                time.sleep(3)
                t0 = time.monotonic()
                back = tuner(work, "rollback", "--study", "digits-cnn")
                phases.append((f"rollback to #{current} (round {r + 1})", t0 - t_start, time.monotonic() - t_start))
                print(back.stdout.strip())
                time.sleep(3)
            result = load.stop()
    finally:
        tuner(work, "undeploy")
    print(f"client at {args.rps:.0f} req/s throughout: {result.summary()}")
    rows = []
    for name, a, b in phases:
        failed = sum(1 for t in result.failed_at_s if a <= t < b)
        rows.append({"phase": name, "start_s": round(a, 2), "end_s": round(b, 2), "requests_failed": failed})
        print(f"  {name}: {a:.1f}-{b:.1f} s, {failed} failed")
    outside = result.requests_failed - sum(r["requests_failed"] for r in rows)
    print(f"  outside the switches: {outside} failed; errors: {list(result.errors_sample)}")
    summary = {"target_rps": args.rps, "rounds": args.rounds, "verify_s": args.verify_s,
               "requests_ok": result.requests_ok, "requests_failed": result.requests_failed,
               "failed_by_status": {str(k): v for k, v in result.failed_by_status.items()},
               "failed_by_kind": result.failed_by_kind, "latency_p95_ms": result.latency_p95_ms,
               "latency_p99_ms": result.latency_p99_ms, "errors_sample": list(result.errors_sample),
               "failed_at_s": list(result.failed_at_s)}
    print(f"wrote {write_results('switch_under_load', rows, summary)}")


if __name__ == "__main__":
    main()
