"""`tuner show`: a study's trials and its feasible Pareto front, as a table or as JSON."""

from __future__ import annotations

import argparse
import json

from tuner.cli.common import pick_study, study_arg
from tuner.cli.table import format_table, legends
from tuner.study.readback import study_record


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("show", help="print a study's trials and its feasible Pareto front",
                       description="Print the trials of a study; --json prints the machine-readable record.")
    study_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def run(args: argparse.Namespace) -> int:
    study = pick_study(args.study, args.storage)
    record = study_record(study)
    if args.json:
        print(json.dumps(record.to_json(), indent=2))
        return 0
    model = study.user_attrs.get("model", {})
    trials = record.trials
    print(f"study {study.study_name!r}: model {model.get('name')} ({model.get('source')}), "
          f"{len(trials)} trials; accuracy = {model.get('accuracy_metric')}, fp32 "
          f"{study.user_attrs.get('fp32_accuracy', float('nan')):.4f}")
    print(f"objectives: {', '.join(f'{o} ({d})' for o, d in zip(record.objectives, record.directions))}")
    print("FPGA rows are ESTIMATED by the DPU cost model, with their expected error; CPU rows are measured. level: "
          "served = through the Ray Serve app over HTTP (what promote deploys), engine = ONNX Runtime in a bench "
          "process; eff = served / engine throughput.\n")
    print(format_table(trials))
    for line in legends(trials):
        print(line)
    print(f"\nfeasible Pareto front: {[t.number for t in record.front]}")
    return 0
