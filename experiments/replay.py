"""Offline replay: run samplers against a recorded grid (experiments/record_grid.py), with no
hardware: a trial's result is looked up in the table. Every trial counts, repeats included.

Two scenarios per sampler and seed:
- front: the grid's own constraints (accuracy floor). Quality = hypervolume of the feasible
  points found so far / hypervolume of the exhaustive feasible front. Objectives are
  normalised to [0, 1] over the grid's feasible rows (0 = best; throughput flipped) and the
  reference point is 1.1 in every objective. Reported: the ratio after each trial, and the
  trials needed to reach 95%.
- slo: the same plus a p95 SLO given to the sampler as a constraint; three SLOs per seed
  (default: the 25th, 50th and 75th percentile of p95 over the feasible grid rows, so one
  lucky SLO cannot decide). The constrained optimum is the cheapest configuration meeting the
  SLO and the accuracy floor; it counts as found once a trial's cost is within 3% of it
  (measurement noise makes a closer test meaningless). Reported: the trial that found it, and
  whether that was within 5% and within 10% of the grid.

A grid recorded with repeats (record_grid.py --repeats K) holds each configuration's median
(the truth) and every measurement: the sampler is told one measurement, as a study would be (the
first time a configuration is chosen its first measurement, the next time its second, ...),
while every score (hypervolume, the optimum found) uses the medians of the configurations found.
A grid of single measurements is scored by those measurements (truth and observation coincide).

    python experiments/replay.py --grid experiments/results/grid_digits-cnn.csv \\
        --sampler default,random --seeds 1000,1001,1002 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402

from tuner.cluster_info import ClusterInfo  # noqa: E402
from tuner.config import TrialConfig  # noqa: E402
from tuner.front.hypervolume import REFERENCE_POINT, hypervolume, normalised_minimised  # noqa: E402
from tuner.metrics import directions_for  # noqa: E402
from tuner.prices import load_prices  # noqa: E402
from tuner.search.context import SamplerContext  # noqa: E402
from tuner.search.samplers import SAMPLERS, make_sampler  # noqa: E402
from tuner.search.suggest import suggest
from tuner.spec.space import SearchSpace  # noqa: E402

OBJ = ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]
FOUND_TOLERANCE = 0.03


def load_grid(path: Path) -> tuple[dict[TrialConfig, dict], dict]:
    meta = json.loads(path.with_suffix(".json").read_text())
    table = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            cfg = TrialConfig(r["platform"], int(r["batch_size"]), r["precision"], int(r["replicas"]),
                              int(r["threads_per_replica"]), r["device"] or None)
            row = {k: (float(r[k]) if r[k] not in ("", None) else None) for k in OBJ + ["accuracy"]}
            row["estimated"] = r["estimated"] == "True"
            row["runnable"] = r["runnable"] == "True"
            runs = [r.get(f"{k}_runs") or "" for k in OBJ]
            row["observations"] = [dict(zip(OBJ, map(float, vals))) for vals in
                                   zip(*(x.split(";") for x in runs))] if all(runs) and row["runnable"] else []
            table[cfg] = row
    return table, meta


class Landscape:
    """A recorded grid, its normalisation and its exhaustive front."""

    def __init__(self, table: dict[TrialConfig, dict], meta: dict, slo_ms: float | None = None) -> None:
        self.table, self.meta = table, meta
        self.first_run = 0
        self.space = SearchSpace.model_validate(meta["space"])
        c = meta["cluster"]
        self.cluster = ClusterInfo(c["total_cpus"], c["max_node_cpus"], fpga_devices=c["fpga_devices"])
        self.floor = self.space.constraints.accuracy_min_ratio * meta["fp32_accuracy"]
        ok = [v for v in table.values() if v["runnable"] and v["accuracy"] >= self.floor]
        vals = np.array([[v[k] for k in OBJ] for v in ok])
        self.lo, self.hi = vals.min(0), vals.max(0)
        self.p95_values = vals[:, 1]
        self.full_hv = self.hv(ok)
        self._ok = ok
        self.set_slo(slo_ms if slo_ms is not None else float(np.median(vals[:, 1])))

    def set_slo(self, slo_ms: float) -> None:
        self.slo_ms = slo_ms
        self.optimum_cost = min(v["cost_usd_per_million"] for v in self._ok if v["latency_p95_ms"] <= slo_ms)

    def observed(self, cfg: TrialConfig, times_seen: int) -> dict:
        """What the sampler is told the `times_seen`-th time it chooses `cfg` (0: the first
        measurement, or the `first_run`-th with --first-run); the truth when the grid holds one
        measurement per configuration."""
        row = self.table[cfg]
        obs = row["observations"]
        return row | obs[(times_seen + self.first_run) % len(obs)] if obs else row

    def feasible(self, row: dict, slo: bool) -> bool:
        return row["runnable"] and row["accuracy"] >= self.floor and (not slo or row["latency_p95_ms"] <= self.slo_ms)

    def hv(self, rows: list[dict], tolerance: float = 0.0) -> float:
        """Hypervolume of `rows`; with a `tolerance`, each counts as that much better in every
        objective (a point within measurement noise of a front point counts as finding it)."""
        if not rows:
            return 0.0
        vals = np.array([[r[k] for k in OBJ] for r in rows]) * np.array([1 + tolerance, 1 / (1 + tolerance), 1 / (1 + tolerance)])
        pts = normalised_minimised(vals, OBJ, self.lo, self.hi)
        return hypervolume(pts, np.full(3, REFERENCE_POINT))

    def contributions(self) -> list[tuple[TrialConfig, float]]:
        """Each feasible configuration's exclusive share of the exhaustive hypervolume."""
        ok = [(c, v) for c, v in self.table.items() if self.feasible(v, slo=False)]
        shares = [(c, 1 - self.hv([w for d, w in ok if d != c]) / self.full_hv) for c, _ in ok]
        return sorted([x for x in shares if x[1] > 1e-4], key=lambda x: -x[1])


def context_for(land: Landscape) -> SamplerContext:
    """What tuner knows before the first trial: accuracy per precision, FPGA cost-model output."""
    prices = load_prices(land.space.prices)
    estimates = {c: {k: v[k] for k in OBJ} for c, v in land.table.items() if v["estimated"] and v["runnable"]}
    return SamplerContext(land.space, land.cluster, accuracy=land.meta["accuracy"],
                          fp32_accuracy=land.meta["fp32_accuracy"], estimates=estimates,
                          usd_per_hour=prices.usd_per_hour,
                          accuracy_floor_ratio=land.space.constraints.accuracy_min_ratio,
                          slo_ms=None)


def run(land: Landscape, sampler_name: str, seed: int, trials: int, slo: bool, tolerance: float = 0.0) -> dict:
    ctx = context_for(land)
    if slo:
        ctx = SamplerContext(**{**ctx.__dict__, "slo_ms": land.slo_ms})
    sampler = make_sampler(sampler_name, seed, ctx)
    study = optuna.create_study(directions=directions_for(OBJ), sampler=sampler)
    chosen, found_rows, curve, optimum_at = [], [], [], None
    seen: dict[TrialConfig, int] = {}
    for i in range(trials):
        trial = study.ask()
        cfg = suggest(land.space, trial, land.cluster)
        row, told = land.table[cfg], land.observed(cfg, seen.get(cfg, 0))  # truth, and what the sampler is told
        seen[cfg] = seen.get(cfg, 0) + 1
        chosen.append(cfg.to_dict())
        trial.set_constraint("accuracy", land.floor - (row["accuracy"] or 0.0))
        trial.set_constraint("runnable", 0.0 if row["runnable"] else 1.0)
        if slo:
            trial.set_constraint("latency_p95_ms", (told["latency_p95_ms"] or math.inf) - land.slo_ms)
        values = [told[k] for k in OBJ] if row["runnable"] else [0.0, math.inf, math.inf]
        study.tell(trial, values)
        if land.feasible(row, slo):
            found_rows.append(row)
            if slo and optimum_at is None and row["cost_usd_per_million"] <= land.optimum_cost * (1 + FOUND_TOLERANCE):
                optimum_at = i + 1
        curve.append(min(1.0, land.hv(found_rows, tolerance) / land.full_hv) if not slo else None)
    out = {"sampler": sampler_name, "seed": seed, "scenario": "slo" if slo else "front", "configs": chosen}
    if slo:
        out["slo_ms"] = land.slo_ms
        out["optimum_found_at"] = optimum_at
    else:
        out["hv_ratio"] = [round(x, 5) for x in curve]
        out["trials_to_95"] = next((i + 1 for i, x in enumerate(curve) if x >= 0.95), None)
    out["repeated_configs"] = len(chosen) - len({json.dumps(c, sort_keys=True) for c in chosen})
    return out


def summarise(results: list[dict], grid_size: int) -> list[dict]:
    rows = []
    for name in dict.fromkeys(r["sampler"] for r in results):
        front = [r for r in results if r["sampler"] == name and r["scenario"] == "front"]
        slo = [r for r in results if r["sampler"] == name and r["scenario"] == "slo"]
        t95 = [r["trials_to_95"] if r["trials_to_95"] is not None else math.inf for r in front]
        found = [r["optimum_found_at"] if r["optimum_found_at"] is not None else math.inf for r in slo]
        rows.append({
            "sampler": name, "seeds": len(front),
            "median_trials_to_95": statistics.median(t95) if t95 else None,
            "worst_trials_to_95": max(t95) if t95 else None,
            "median_trials_to_optimum": statistics.median(found) if found else None,
            "optimum_within_5pct_of_grid": sum(f <= math.ceil(0.05 * grid_size) for f in found) / max(1, len(found)),
            "optimum_within_10pct_of_grid": sum(f <= math.ceil(0.10 * grid_size) for f in found) / max(1, len(found)),
            "median_repeated_configs": statistics.median(r["repeated_configs"] for r in front) if front else None,
        })
    return rows


def plot(results: list[dict], land: Landscape, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["sampler"] for r in results):
        curves = np.array([r["hv_ratio"] for r in results if r["sampler"] == name and r["scenario"] == "front"])
        if len(curves):
            x = np.arange(1, curves.shape[1] + 1)
            ax.plot(x, np.median(curves, 0), label=name)
            ax.fill_between(x, np.percentile(curves, 25, 0), np.percentile(curves, 75, 0), alpha=0.15)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume / exhaustive (median, IQR)")
    ax.set_title(f"{land.meta['model']}: {len(land.table)} configurations (FPGA rows estimated)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--sampler", default="default,tpe,gp,nsga2,random", help=f"comma-separated: {', '.join(SAMPLERS)}")
    parser.add_argument("--seeds", default=",".join(str(1000 + i) for i in range(10)))
    parser.add_argument("--trials", type=int, default=60, help="trials per run in the front scenario")
    parser.add_argument("--slo-trials", type=int, default=None,
                        help="trials per run in the SLO scenario (default 10%% of the grid)")
    parser.add_argument("--slo-ms", default=None, help="comma-separated p95 SLOs (default: the 25/50/75th percentiles of p95)")
    parser.add_argument("--hv-tolerance", type=float, default=0.0,
                        help="credit each point found this much better in every objective (e.g. 0.03: "
                             "within measurement noise of a front point counts as finding it); default 0, strict")
    parser.add_argument("--first-run", type=int, default=0,
                        help="on a grid recorded with repeats, tell the sampler this pass's measurement first "
                             "(then the next ...): does a result hang on which measurement came first?")
    parser.add_argument("--contributions", action="store_true",
                        help="print each configuration's exclusive share of the exhaustive hypervolume, and exit")
    parser.add_argument("--json", action="store_true", help="print every run (configs chosen, in order) as JSON")
    parser.add_argument("--out-stem", default=None,
                        help="result files' name in experiments/results/ (default replay_<model>)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    table, meta = load_grid(args.grid)
    land = Landscape(table, meta)
    land.first_run = args.first_run
    if args.contributions:
        for cfg, share in land.contributions():
            row = table[cfg]
            print(f"{share:6.1%}  {cfg.label()}  "
                  + "  ".join(f"{k} {row[k]:.4g}" for k in OBJ))
        return
    slos = ([float(x) for x in args.slo_ms.split(",")] if args.slo_ms
            else [float(np.percentile(land.p95_values, q)) for q in (25, 50, 75)])
    seeds = [int(s) for s in args.seeds.split(",")]
    slo_trials = args.slo_trials or math.ceil(0.10 * len(table))
    results = []
    for name in args.sampler.split(","):
        for seed in seeds:
            front = run(land, name, seed, min(args.trials, len(table)), slo=False, tolerance=args.hv_tolerance)
            results.append(front)
            found = []
            for slo_ms in slos:
                land.set_slo(slo_ms)
                results.append(run(land, name, seed, slo_trials, slo=True))
                found.append(results[-1]["optimum_found_at"])
            if not args.json:
                print(f"{name} seed {seed}: 95% after {front['trials_to_95']} trials; optimum at {found}; "
                      f"repeats {front['repeated_configs']}", file=sys.stderr)
    summary = summarise(results, len(table))
    stem = args.out_stem or f"replay_{meta['model']}"
    if args.json:
        print(json.dumps({"grid": str(args.grid), "grid_size": len(table), "slo_ms": slos,
                          "summary": summary, "runs": results}, indent=2))
    else:
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / f"{stem}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(summary[0]))
            w.writeheader()
            w.writerows(summary)
        (RESULTS / f"{stem}.json").write_text(json.dumps(
            {"grid": str(args.grid), "grid_size": len(table), "slo_ms": slos, "reference_point": REFERENCE_POINT,
             "found_tolerance": FOUND_TOLERANCE, "hv_tolerance": args.hv_tolerance, "summary": summary,
             "runs": results}, indent=1) + "\n")
        plot(results, land, RESULTS / f"{stem}.png")
        for row in summary:
            print(row)
        print(f"wrote {RESULTS / stem}.csv/.json/.png")


if __name__ == "__main__":
    main()
