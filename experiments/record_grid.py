"""Record a landscape: measure every configuration of a search space on this machine.

One row per configuration, columns named as in `tuner show --json` (the config keys, then
the metric keys), plus `device`, `feasible`, the measurement's `stable`, `requests`,
`throughput_cv`, and `trial_wall_s`. FPGA rows come from the cost model (`estimated` true).
The same runner and protocol as a study are used; configurations are measured in a shuffled
order so slow drift of the machine does not line up with one parameter.

With `--repeats K` (K >= 3 for a replay whose truth is not luck) the whole grid is measured K
times, interleaved (pass after pass, each in its own shuffled order): the metric columns are then
each configuration's median (the truth a replay scores by), `<metric>_runs` keeps every
measurement in order ("a;b;c"), and `throughput_cv` is the spread across passes. `disturbed_runs`
counts measurements that other work disturbed (`tuner.evaluators.interference`).
Writes experiments/results/grid_<model>.csv and grid_<model>.json (machine, space, cluster).

Every measurement is appended to grid_<model>.partial.jsonl as it is taken (its pass, its
configuration, its figures, when it was taken). A recording that is stopped (a long grid, a
session that ends) continues with `--resume`: the same seed gives the same orders, and what the
file holds is not measured again. Without `--resume` an existing partial file is refused, so a
recording is never overwritten by accident. The file is removed when the grid is written.

    python experiments/record_grid.py --model digits-cnn [--space default] [--limit N] [--repeats 3]
    python experiments/record_grid.py --model resnet18 --repeats 3 --resume   # continue a stopped one
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from common import RESULTS, machine

from tuner.costmodels.fpga.devices import load_devices
from tuner.metrics import METRIC_KEYS
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import prepare_model
from tuner.prices import load_prices
from tuner.record import CONFIG_KEYS
from tuner.runner.base import TrialFailed
from tuner.runner.cluster import RayCluster
from tuner.runner.trial import RayRunner
from tuner.search.suggest import enumerate_configs
from tuner.spec.load import load_space
from tuner.study.outcome import make_outcome

KEYS = [*CONFIG_KEYS, "device", *METRIC_KEYS, "feasible", "runnable", "stable", "requests",
        "throughput_cv", "trial_wall_s"]
RUN_KEYS = ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]  # kept per measurement with --repeats


def write_rows(path, rows: list[dict], keys: list[str] = KEYS) -> None:
    """The table, sorted by configuration, columns as in `tuner show --json`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(",".join(keys) + "\n")
        order = ("platform", "precision", "batch_size", "replicas", "threads_per_replica")
        for r in sorted(rows, key=lambda r: tuple(r[k] for k in order)):
            f.write(",".join("" if r.get(k) is None else str(r[k]) for k in keys) + "\n")


def merge_runs(runs: list[dict]) -> dict:
    """One configuration's measurements (one per pass) as one row: medians, every run, the spread."""
    ok = [r for r in runs if r.get("runnable")]
    if not ok:
        return runs[0] | {"runs": len(runs)}
    row = dict(ok[0])
    for k in METRIC_KEYS:
        if k not in ("estimated", "error_band") and all(r.get(k) is not None for r in ok):
            row[k] = statistics.median(r[k] for r in ok)
    for k in RUN_KEYS:
        row[f"{k}_runs"] = ";".join(str(r.get(k)) for r in ok)
    tputs = [r["throughput_rps"] for r in ok]
    row["throughput_cv"] = statistics.pstdev(tputs) / statistics.mean(tputs) if len(tputs) > 1 else 0.0
    row["feasible"] = all(r["feasible"] for r in ok)
    row["stable"] = all(r.get("stable") for r in ok)
    row["disturbed_runs"] = sum(bool(r.get("disturbed")) for r in ok)
    row["runs"] = len(ok)
    return row


def _plain(value):
    """A numpy scalar as its Python value (json cannot write numpy integers)."""
    return value.item() if hasattr(value, "item") else str(value)


def _key(row: dict) -> tuple:
    return tuple(row.get(k) for k in (*CONFIG_KEYS, "device"))


def load_partial(path, grid: list) -> list[dict]:
    """The rows a stopped recording measured, each with its `_config` from `grid` again."""
    by_key = {_key({k: getattr(c, k) for k in CONFIG_KEYS} | {"device": c.device}): c for c in grid}
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        config = by_key.get(_key(row))
        if config is None:
            raise SystemExit(f"{path}:{n}: configuration {_key(row)} is not in this grid (another --space, "
                             "--seed or --limit?). Resume with the arguments it was started with, or move the file away.")
        rows.append(row | {"_config": config})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--space", default="default")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N (for a trial run)")
    parser.add_argument("--seed", type=int, default=0, help="order of measurement")
    parser.add_argument("--repeats", type=int, default=1, help="measure the whole grid this many times, interleaved")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped recording from grid_<model>.partial.jsonl (same arguments)")
    args = parser.parse_args()
    partial = RESULTS / f"grid_{args.model}.partial.jsonl"
    if partial.exists() and not args.resume:
        raise SystemExit(f"{partial} holds a stopped recording. Continue it with --resume (and the arguments it "
                         "was started with), or move the file away to start again.")
    space = load_space(args.space)
    prices = load_prices(space.prices)
    devices = load_devices()
    cluster = RayCluster(None)
    rows = []
    t0 = time.perf_counter()
    try:
        info = cluster.info({k: d.cores for k, d in devices.items()})
        grid = enumerate_configs(space, info)
        random.Random(args.seed).shuffle(grid)
        grid = grid[: args.limit] if args.limit else grid
        passes = []
        for p in range(args.repeats):
            order = list(grid)
            random.Random(args.seed + p).shuffle(order)
            passes.append(order)
        precisions = {c.precision for c in grid}
        model = prepare_model(args.model, ModelOptions(), precisions, log=print)
        runner = RayRunner(model, space.measurement, space.load, devices, cluster)
        constraints = space.constraints.to_constraints()
        measured = [(p, c) for p, order in enumerate(passes) for c in order]
        resumed = 0
        if partial.exists():
            rows = load_partial(partial, grid)
            resumed = len(rows)
            print(f"resuming: {len(rows)} of {len(measured)} measurements from {partial}", flush=True)
        done = {(r["_pass"], r["_config"]) for r in rows}
        for i, (p, config) in enumerate(measured):
            if (p, config) in done:
                continue
            if p > 0 and config.platform == "fpga":  # an estimate is the same every time: no need to repeat it
                rows.append(next(r for r in rows if r["_config"] == config) | {"_pass": p})
                continue
            row = {k: getattr(config, k) for k in CONFIG_KEYS} | {"device": config.device, "_config": config, "_pass": p}
            try:
                outcome = make_outcome(config, runner.run(config), model, prices, constraints)
                d = outcome.details
                band = outcome.metrics.error_band  # an FPGA estimate's band, as JSON in its CSV cell
                row |= outcome.metrics.to_dict() | {
                    "error_band": json.dumps(band.to_dict()) if band else None,
                    "feasible": outcome.feasible, "runnable": True, "stable": d.get("stable"),
                    "requests": d.get("requests"), "throughput_cv": d.get("throughput_cv"),
                    "trial_wall_s": d.get("trial_wall_s"),
                    "disturbed": (d.get("interference") or {}).get("disturbed")}
            except TrialFailed as exc:
                row |= {k: None for k in METRIC_KEYS} | {"feasible": False, "runnable": False, "failure": exc.reason}
            row["measured_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            rows.append(row)
            with open(partial, "a") as f:  # a stop (or a crash) keeps every measurement taken
                f.write(json.dumps({k: v for k, v in row.items() if k != "_config"}, default=_plain) + "\n")
            write_rows(RESULTS / f"grid_{args.model}.partial.csv", rows)  # a crash keeps what was measured
            print(f"[{i + 1}/{len(measured)}] pass {p + 1}: {config.label()}: {row.get('throughput_rps')} inf/s, "
                  f"p95 {row.get('latency_p95_ms')} ms", flush=True)
        runner.shutdown()
        cluster_desc = {"total_cpus": info.total_cpus, "max_node_cpus": info.max_node_cpus,
                        "fpga_devices": info.fpga_devices, "description": cluster.describe()}
    finally:
        cluster.shutdown()
    if args.repeats > 1:
        merged = [merge_runs([r for r in rows if r["_config"] == c]) for c in grid]
        keys = [*KEYS, "disturbed_runs", "runs", *(f"{k}_runs" for k in RUN_KEYS)]
        write_rows(RESULTS / f"grid_{args.model}.csv", merged, keys)
    else:
        write_rows(RESULTS / f"grid_{args.model}.csv", rows)
    meta = {"machine": machine(), "model": args.model, "space": space.model_dump(mode="json", exclude_none=True),
            "cluster": cluster_desc, "fp32_accuracy": model.fp32_accuracy, "accuracy_metric": model.accuracy_metric,
            "accuracy": {p: v.accuracy for p, v in model.variants.items()}, "configurations": len(grid),
            "repeats": args.repeats, "truth": "median of the repeats" if args.repeats > 1 else "one measurement",
            "wall_s": round(time.perf_counter() - t0, 1), "resumed_measurements": resumed,
            "measured_utc": [min(r["measured_utc"] for r in rows if "measured_utc" in r),
                             max(r["measured_utc"] for r in rows if "measured_utc" in r)]}
    (RESULTS / f"grid_{args.model}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (RESULTS / f"grid_{args.model}.partial.csv").unlink(missing_ok=True)
    partial.unlink(missing_ok=True)
    print(f"wrote {RESULTS / f'grid_{args.model}.csv'} ({len(rows)} rows, {meta['wall_s']} s)")


if __name__ == "__main__":
    main()
