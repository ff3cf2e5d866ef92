"""Repeatability: the same configurations measured `--repeats` times each, interleaved (A B C A B
C ...), so drift of the machine hits all alike; the coefficient of variation (CV) of throughput
per configuration and its median across configurations, on a quiet machine and with one busy
process beside it (`python -c "while True: pass"`, started and stopped by this script).

Targets (issue 18): median CV <= 5% quiet; <= 10% busy for the configurations that leave the
busy process a core (replicas x threads <= free cores: 1 of 2 here). Each measurement also
records what `tuner.evaluators.interference` saw (windows left out, others' share of the trial's
cores), so a disturbed figure is visible as such.

    python experiments/repeatability.py [--measure served|engine] [--conditions quiet,busy]
                                        [--repeats 5] [--models digits-cnn,resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext

from common import write_results

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.host_load import sample_host
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings
from tuner.testing.busy import busy_process

ENGINE = [
    ("digits-cnn", TrialConfig("cpu", 1, "fp32", 1, 1)),
    ("digits-cnn", TrialConfig("cpu", 32, "int8", 1, 1)),
    ("digits-cnn", TrialConfig("cpu", 16, "fp16", 2, 1)),
    ("digits-cnn", TrialConfig("cpu", 64, "fp32", 1, 2)),
    ("resnet18", TrialConfig("cpu", 1, "int8", 1, 1)),
    ("resnet18", TrialConfig("cpu", 2, "fp32", 2, 1)),
]
# Served layouts leave serving.stack_cpus (1) of the 2 cores to the proxy and the client, as a
# served study's search does: one replica of one thread here.
SERVED = [(m, TrialConfig("cpu", c.batch_size, c.precision, 1, 1)) for m, c in ENGINE]
STACK_CPUS = ServedSettings().stack_cpus


def cores_used(config: TrialConfig, level: str) -> int:
    """Cores the trial takes: its replicas' threads, and at the served level the stack's cores."""
    return config.replicas * config.threads_per_replica + (STACK_CPUS if level == "served" else 0)


def measure(condition: str, level: str, repeats: int, models: list[str]) -> list[dict]:
    configs = [(n, c) for n, c in (SERVED if level == "served" else ENGINE) if n in models]
    with busy_process() if condition == "busy" else nullcontext():
        return _measure(condition, level, repeats, models, configs)


def _measure(condition: str, level: str, repeats: int, models: list[str], configs: list) -> list[dict]:
    cluster = RayCluster(None)
    try:
        time.sleep(2.0)
        host = sample_host(2.0)
        print(f"[{condition}] this machine: {host.describe() if host else 'unknown'}", flush=True)
        prepared = {n: prepare_model(n, ModelOptions(), {"fp32", "fp16", "int8"}, log=lambda s: None) for n in models}
        served = ServedSettings(engine_ceiling=False)
        runners = {n: RayRunner(m, MeasurementSettings(), LoadSpec(), {}, cluster, level=level, served=served)
                   for n, m in prepared.items()}
        rows = []
        try:
            for r in range(repeats):
                for name, config in configs:
                    res = runners[name].run(config)
                    inter = res.details.get("interference", {})
                    rows.append({"condition": condition, "level": level, "repeat": r, "model": name,
                                 "config": config.label(), "cores": cores_used(config, level),
                                 "throughput_rps": round(res.throughput_rps, 3),
                                 "latency_p95_ms": round(res.latency_p95_ms, 4), "stable": res.details["stable"],
                                 "windows": res.details["windows"], "disturbed": inter.get("disturbed"),
                                 "windows_left_out": inter.get("windows_left_out"),
                                 "others_share_max": inter.get("others_share_max"),
                                 "top_others": "; ".join(inter.get("top_others") or []),
                                 "busy_cores_before": round(host.busy_cores, 2) if host else None})
                    print(rows[-1], flush=True)
        finally:
            for runner in runners.values():
                runner.shutdown()
    finally:
        cluster.shutdown()
    return rows


def summarise(rows: list[dict], condition: str, level: str) -> dict:
    per_config = []
    free = (os.cpu_count() or 2) - (1 if condition == "busy" else 0)
    for name, config in dict.fromkeys(SERVED if level == "served" else ENGINE):
        mine = [x for x in rows if x["model"] == name and x["config"] == config.label() and x["condition"] == condition]
        if not mine:
            continue
        t, p = [x["throughput_rps"] for x in mine], [x["latency_p95_ms"] for x in mine]
        per_config.append({"model": name, "config": config.label(), "leaves_a_core": cores_used(config, level) <= free,
                           "median_throughput_rps": statistics.median(t),
                           "throughput_cv": round(statistics.pstdev(t) / statistics.mean(t), 4),
                           "p95_cv": round(statistics.pstdev(p) / statistics.mean(p), 4),
                           "disturbed": sum(1 for x in mine if x["disturbed"]),
                           "windows_left_out": sum(x["windows_left_out"] or 0 for x in mine)})
    fits = [c["throughput_cv"] for c in per_config if c["leaves_a_core"]]
    return {"per_config": per_config,
            "median_throughput_cv": statistics.median(c["throughput_cv"] for c in per_config),
            "median_throughput_cv_leaving_a_core": statistics.median(fits) if fits else None,
            "median_p95_cv": statistics.median(c["p95_cv"] for c in per_config),
            "target": "median throughput CV <= 0.05" if condition == "quiet"
            else "median throughput CV <= 0.10 over configurations that leave the busy process a core (replicas x "
                 "threads, plus the stack's core when served, <= free cores)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", choices=["served", "engine"], default="served")
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="digits-cnn,resnet18")
    args = parser.parse_args()
    models = args.models.split(",")
    rows, summary = [], {"measure": args.measure, "repeats": args.repeats}
    for condition in args.conditions.split(","):
        rows += measure(condition, args.measure, args.repeats, models)
        summary[condition] = summarise(rows, condition, args.measure)
    path = write_results(f"repeatability_{args.measure}", rows, summary)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
