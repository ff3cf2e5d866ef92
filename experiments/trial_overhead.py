"""Trial overhead: how much of a trial's wall time is not spent measuring?

overhead = (trial_wall_s - measuring_s) / measuring_s, per trial, for digits-cnn and resnet18,
through the same runner a study uses (cores reserved, pooled actors, warm-up, windows).
The first trial of a layout starts its actors (cold); later ones reuse them (warm), as
most trials of a study do. Target: <= 10% (engine level).

At the served level (`--level served`, what `measure: served` runs) a trial deploys or
reconfigures the Ray Serve application, sends untimed load until its rate settles (0.5-1 s), then
runs the protocol over HTTP; by default it also times its engine ceiling first. Reported: `overhead` of the served part
((its wall - its measuring) / its measuring; target <= 15%) and `overhead_with_ceiling` of the whole
trial (wall outside both levels' measuring windows over both levels' measuring time).

    python experiments/trial_overhead.py [--level engine|served] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import write_results

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
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
    parser.add_argument("--level", choices=["engine", "served"], default="engine")
    args = parser.parse_args()
    settings = MeasurementSettings()  # the shipped defaults
    cluster = RayCluster(None)
    rows = []
    try:
        for name, configs in CONFIGS.items():
            model = prepare_model(name, ModelOptions(), {"fp32", "int8"}, log=lambda s: None)
            runner = RayRunner(model, settings, LoadSpec(), {}, cluster, level=args.level)
            for config in configs:
                t0 = time.perf_counter()
                d = runner.run(config).details
                whole_s = time.perf_counter() - t0
                row = {"model": name, "level": args.level, "config": config.label(),
                       "actors_reused": d.get("actors_reused", not d.get("replicas_restarted", True)),
                       "trial_wall_s": d["trial_wall_s"], "measuring_s": d["measuring_s"],
                       "overhead": round((d["trial_wall_s"] - d["measuring_s"]) / d["measuring_s"], 4),
                       "requests": d["requests"], "windows": d["windows"]}
                if args.level == "served":
                    measuring = d["measuring_s"] + (d.get("engine") or {}).get("measuring_s", 0.0)
                    row.update(deploy_s=d["deploy_s"], replicas_restarted=d["replicas_restarted"],
                               prewarm_s=d["prewarm_s"],
                               whole_wall_s=round(whole_s, 3),
                               overhead_with_ceiling=round((whole_s - measuring) / measuring, 4))
                rows.append(row)
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
            "level": args.level,
            "median_overhead": statistics.median(r["overhead"] for r in mine),
            "max_overhead": max(r["overhead"] for r in mine),
            "median_overhead_warm": statistics.median(warm) if warm else None,
            "total_overhead": round(sum(r["trial_wall_s"] - r["measuring_s"] for r in mine)
                                    / sum(r["measuring_s"] for r in mine), 4),
        }
        if args.level == "served":
            summary[name]["median_overhead_with_ceiling"] = statistics.median(r["overhead_with_ceiling"] for r in mine)
            summary[name]["median_deploy_s"] = statistics.median(r["deploy_s"] for r in mine)
    summary["target"] = "<= 0.10" if args.level == "engine" else "<= 0.15 (served part)"
    path = write_results("trial_overhead" if args.level == "engine" else "trial_overhead_served", rows, summary)
    print(json.dumps(summary, indent=2) if args.json else f"\n{json.dumps(summary, indent=2)}\nwrote {path}")


if __name__ == "__main__":
    main()
