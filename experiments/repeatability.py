"""Repeatability: the same configuration measured 5 times (interleaved with the others, so
drift of the machine hits all alike); coefficient of variation (CV) of throughput per
configuration, and its median across configurations. Target: median CV <= 5%.

    python experiments/repeatability.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import write_results

from tuner.config import TrialConfig
from tuner.models.prepare import prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings

CONFIGS = [
    ("digits-cnn", TrialConfig("cpu", 1, "fp32", 1, 1)),
    ("digits-cnn", TrialConfig("cpu", 32, "int8", 1, 1)),
    ("digits-cnn", TrialConfig("cpu", 16, "fp16", 2, 1)),
    ("digits-cnn", TrialConfig("cpu", 64, "fp32", 1, 2)),
    ("resnet18", TrialConfig("cpu", 1, "int8", 1, 1)),
    ("resnet18", TrialConfig("cpu", 2, "fp32", 2, 1)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cluster = RayCluster(None)
    models = {name: prepare_model(name, {}, {"fp32", "fp16", "int8"}, log=lambda s: None)
              for name in sorted({n for n, _ in CONFIGS})}
    runners = {name: RayRunner(m, MeasurementSettings(), LoadSpec(), {}, cluster) for name, m in models.items()}
    rows = []
    try:
        for r in range(args.repeats):
            for name, config in CONFIGS:
                res = runners[name].run(config)
                rows.append({"repeat": r, "model": name, "config": config.label(),
                             "throughput_rps": round(res.throughput_rps, 3), "latency_p95_ms": round(res.latency_p95_ms, 4),
                             "stable": res.details["stable"], "windows": res.details["windows"]})
                if not args.json:
                    print(rows[-1], flush=True)
    finally:
        for runner in runners.values():
            runner.shutdown()
        cluster.shutdown()
    per_config = []
    for name, config in CONFIGS:
        t = [x["throughput_rps"] for x in rows if x["model"] == name and x["config"] == config.label()]
        p = [x["latency_p95_ms"] for x in rows if x["model"] == name and x["config"] == config.label()]
        per_config.append({"model": name, "config": config.label(), "median_throughput_rps": statistics.median(t),
                           "throughput_cv": statistics.pstdev(t) / statistics.mean(t),
                           "p95_cv": statistics.pstdev(p) / statistics.mean(p)})
    summary = {"repeats": args.repeats, "per_config": per_config,
               "median_throughput_cv": statistics.median(c["throughput_cv"] for c in per_config),
               "median_p95_cv": statistics.median(c["p95_cv"] for c in per_config), "target": "median throughput CV <= 0.05"}
    path = write_results("repeatability", rows, summary)
    print(json.dumps(summary, indent=2))
    if not args.json:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
