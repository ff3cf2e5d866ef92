"""Parallel speed-up: trials per hour with --parallel 2 vs 1, on a real two-node local
Ray cluster (Ray's cluster utilities: two nodes of 1 CPU each on this machine).

Every trial is measured (--remeasure), so reuse of earlier measurements does not flatter
either run; the search space holds 1-replica, 1-thread CPU configurations and FPGA estimates.

    python experiments/parallel_speedup.py [--trials 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import write_results
from ray.cluster_utils import Cluster

from tuner.study.tune import TuneOptions, tune

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, fp16, int8]}
    batch_size: {type: int, low: 1, high: 256, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
  fpga:
    device: {type: categorical, choices: [aws-f1]}
    precision: {type: categorical, choices: [int8]}
    batch_size: {type: int, low: 1, high: 256, pow2: true}
    replicas: {type: int, low: 1, high: 2}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuner-speedup-"))
    (work / "space.yaml").write_text(SPACE)
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    rows = []
    try:
        for parallel in (1, 2, 1, 2):
            opts = TuneOptions(model="digits-cnn", space=str(work / "space.yaml"), study=f"p{parallel}-{len(rows)}",
                               storage=f"sqlite:///{work}/speedup.db", trials=args.trials, parallel=parallel,
                               ray_address=nodes.address, seed=len(rows), remeasure=True, finalists=0)
            t0 = time.perf_counter()
            study = tune(opts, log=(lambda s: None))
            wall = time.perf_counter() - t0
            measured = [t for t in study.trials if "measurement" in t.user_attrs]
            busy = sum(t.user_attrs["measurement"].get("trial_wall_s", 0) for t in measured)
            rows.append({"parallel": parallel, "trials": len(study.trials), "wall_s": round(wall, 1),
                         "trials_per_hour": round(3600 * len(study.trials) / wall, 1),
                         "trial_busy_s": round(busy, 1)})
            if not args.json:
                print(rows[-1], flush=True)
    finally:
        nodes.shutdown()
    tph = {p: [r["trials_per_hour"] for r in rows if r["parallel"] == p] for p in (1, 2)}
    summary = {"cluster": "2 nodes x 1 CPU (ray.cluster_utils) on one machine", "trials_per_run": args.trials,
               "trials_per_hour_parallel_1": tph[1], "trials_per_hour_parallel_2": tph[2],
               "speedup": round(sum(tph[2]) / sum(tph[1]), 3),
               "note": "wall time includes Ray connection and model preparation (cached) of each run"}
    path = write_results("parallel_speedup", rows, summary)
    print(json.dumps(summary, indent=2))
    if not args.json:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
