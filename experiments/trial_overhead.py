"""Trial overhead: how much of a trial's wall time is not spent measuring?

overhead = (trial_wall_s - measuring_s) / measuring_s, per trial, for digits-cnn and resnet18,
through the same runner a study uses (cores reserved, pooled actors, warm-up, windows).
The first trial of a layout starts its actors (cold); later ones reuse them (warm), as
most trials of a study do. Target: <= 10%.

    python experiments/trial_overhead.py [--json]
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

CONFIGS = {
    "digits-cnn": [TrialConfig("cpu", b, p, r, t) for p in ("fp32", "int8") for b, r, t in ((1, 1, 1), (32, 2, 1), (8, 1, 2))],
    "resnet18": [TrialConfig("cpu", b, p, r, t) for p in ("fp32", "int8") for b, r, t in ((1, 1, 1), (4, 2, 1), (1, 1, 2))],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = MeasurementSettings()  # the shipped defaults
    cluster = RayCluster(None)
    rows = []
    try:
        for name, configs in CONFIGS.items():
            model = prepare_model(name, {}, {"fp32", "int8"}, log=lambda s: None)
            runner = RayRunner(model, settings, LoadSpec(), {}, cluster)
            for config in configs:
                d = runner.run(config).details
                rows.append({"model": name, "config": config.label(), "actors_reused": d["actors_reused"],
                             "trial_wall_s": d["trial_wall_s"], "measuring_s": d["measuring_s"],
                             "overhead": round((d["trial_wall_s"] - d["measuring_s"]) / d["measuring_s"], 4),
                             "requests": d["requests"], "windows": d["windows"]})
                if not args.json:
                    print(rows[-1])
            runner.shutdown()
    finally:
        cluster.shutdown()
    summary = {}
    for name in CONFIGS:
        mine = [r for r in rows if r["model"] == name]
        warm = [r["overhead"] for r in mine if r["actors_reused"]]
        summary[name] = {
            "median_overhead": statistics.median(r["overhead"] for r in mine),
            "max_overhead": max(r["overhead"] for r in mine),
            "median_overhead_warm": statistics.median(warm) if warm else None,
            "total_overhead": round(sum(r["trial_wall_s"] - r["measuring_s"] for r in mine)
                                    / sum(r["measuring_s"] for r in mine), 4),
        }
    summary["target"] = "<= 0.10"
    path = write_results("trial_overhead", rows, summary)
    print(json.dumps(summary, indent=2) if args.json else f"\n{json.dumps(summary, indent=2)}\nwrote {path}")


if __name__ == "__main__":
    main()
