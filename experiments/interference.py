"""Interference: is a configuration measured alongside another trial (on the other core, as
with --parallel 2) the same as measured alone? Alone and alongside are interleaved, 3 times
each, and "alone" runs on the same core the "alongside" run gets (the other core held idle),
so a difference between cores is not mistaken for interference. Medians are compared.
Target: < 10% difference in throughput and in p95.

    python experiments/interference.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from common import write_results

from tuner.config import TrialConfig
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.spec.measurement import LoadSpec, MeasurementSettings

PAIRS = [  # (measured config, the other trial running beside it)
    ("digits-cnn", TrialConfig("cpu", 8, "int8", 1, 1), TrialConfig("cpu", 64, "fp32", 1, 1)),
    ("resnet18", TrialConfig("cpu", 1, "int8", 1, 1), TrialConfig("cpu", 2, "fp32", 1, 1)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = MeasurementSettings(max_windows=3)  # fixed length, so the neighbour overlaps all of it
    cluster = RayCluster(None)
    total = cluster.allocator.free_cores()
    rows = []
    try:
        for name, target, other in PAIRS:
            model = prepare_model(name, ModelOptions(), {"fp32", "int8"}, log=lambda s: None)
            runner = RayRunner(model, settings, LoadSpec(), {}, cluster)
            for r in range(args.rounds):
                idle = cluster.allocator.try_reserve(1, 1)  # hold the first core idle
                alone = runner.run(target)
                cluster.allocator.release(idle)
                side: list = []
                neighbour = threading.Thread(target=lambda side=side, runner=runner, other=other: side.append(runner.run(other)))
                neighbour.start()
                while cluster.allocator.free_cores() == total:  # wait until the neighbour holds its core
                    time.sleep(0.01)
                beside = runner.run(target)
                neighbour.join()
                for mode, res in (("alone", alone), ("alongside", beside)):
                    rows.append({"model": name, "config": target.label(), "round": r, "mode": mode,
                                 "throughput_rps": round(res.throughput_rps, 3), "latency_p95_ms": round(res.latency_p95_ms, 4),
                                 "cores": res.details["placement"][0]["cores"]})
                    if not args.json:
                        print(rows[-1], flush=True)
            runner.shutdown()
    finally:
        cluster.shutdown()
    summary = {"rounds": args.rounds, "target": "< 10% difference", "pairs": []}
    for name, target, other in PAIRS:
        def med(mode: str, key: str, name: str = name) -> float:
            return statistics.median(x[key] for x in rows if x["model"] == name and x["mode"] == mode)
        summary["pairs"].append({
            "model": name, "config": target.label(), "neighbour": other.label(),
            "throughput_alone": med("alone", "throughput_rps"), "throughput_alongside": med("alongside", "throughput_rps"),
            "throughput_diff": med("alongside", "throughput_rps") / med("alone", "throughput_rps") - 1,
            "p95_alone_ms": med("alone", "latency_p95_ms"), "p95_alongside_ms": med("alongside", "latency_p95_ms"),
            "p95_diff": med("alongside", "latency_p95_ms") / med("alone", "latency_p95_ms") - 1,
        })
    path = write_results("interference", rows, summary)
    print(json.dumps(summary, indent=2))
    if not args.json:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
