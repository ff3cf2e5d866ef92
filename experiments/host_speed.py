"""Host speed: how steady is this machine's CPU when nothing else runs on it?

A fixed amount of pure-Python work is timed, block after block, on each core (the process
pinned to it), first one core at a time, then on every core at once. With nothing else
running, every block should take the same time; what varies is the machine itself (a VM's
host sharing its cores, frequency changes). The script also reads what the guest kernel
sees: steal time in /proc/stat and the worker's CPU time against wall time, to show whether
a slowdown is visible to CPU accounting (if it is not, no interference probe can see it).

What it means for tuner: a measuring window of W seconds cannot be steadier than this
machine's speed over blocks of W seconds; the CV printed for 1 s and 4 s blocks is the floor
under every repeatability figure measured here (docs/measurement.md).

    python experiments/host_speed.py [--seconds 30] [--step-s 0.25] [--json]

Run it with nothing else running (it measures the machine, not tuner).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

from common import write_results

SLOW_SHARE = 0.85  # a block slower than this share of the core's 90th-percentile speed is "slow"
BLOCKS_S = (0.25, 1.0, 4.0)


def _steal_ticks() -> int:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])  # cpu user nice system idle iowait irq softirq steal


def _spin(core: int, seconds: float, step_s: float, out: mp.Queue) -> None:
    """Pinned to `core`: count fixed work units per `step_s`, for `seconds`. Puts
    (core, rates per second, cpu seconds / wall seconds)."""
    os.sched_setaffinity(0, {core})
    rates: list[float] = []
    cpu0, wall0, end = time.process_time(), time.perf_counter(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, units = time.perf_counter(), 0
        while time.perf_counter() - start < step_s:
            for _ in range(2000):
                pass
            units += 1
        rates.append(units / (time.perf_counter() - start))
    out.put((core, rates, (time.process_time() - cpu0) / (time.perf_counter() - wall0)))


def _run(cores: list[int], seconds: float, step_s: float) -> tuple[dict[int, list[float]], dict[int, float], int]:
    queue: mp.Queue = mp.Queue()
    steal0 = _steal_ticks()
    procs = [mp.Process(target=_spin, args=(c, seconds, step_s, queue)) for c in cores]
    for p in procs:
        p.start()
    got = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return {c: r for c, r, _ in got}, {c: u for c, _, u in got}, _steal_ticks() - steal0


def _blocks(rates: list[float], step_s: float, block_s: float) -> list[float]:
    k = max(1, round(block_s / step_s))
    return [statistics.fmean(rates[i:i + k]) for i in range(0, len(rates) - k + 1, k)]


def _cv_pct(values: list[float]) -> float:
    return 100 * statistics.pstdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def _correlation(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    return statistics.correlation(a[:n], b[:n]) if n > 2 else float("nan")


def _summarise(condition: str, core: int, rates: list[float], cpu_per_wall: float, steal: int,
               step_s: float) -> dict[str, Any]:
    p90 = statistics.quantiles(rates, n=10)[-1]
    row: dict[str, Any] = {"condition": condition, "core": core, "blocks": len(rates),
                              "slow_block_share": round(sum(r < SLOW_SHARE * p90 for r in rates) / len(rates), 3),
                              "min_of_p90": round(min(rates) / p90, 3),
                              "cpu_s_per_wall_s": round(cpu_per_wall, 3), "steal_ticks": steal}
    for block_s in BLOCKS_S:
        row[f"cv_{block_s:g}s_pct"] = round(_cv_pct(_blocks(rates, step_s, block_s)), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="per condition (default 30)")
    parser.add_argument("--step-s", type=float, default=0.25, help="timing block (default 0.25 s)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    for core in cores:  # one core at a time, the others idle
        rates, use, steal = _run([core], args.seconds, args.step_s)
        rows.append(_summarise("alone", core, rates[core], use[core], steal, args.step_s))
    rates, use, steal = _run(cores, args.seconds, args.step_s)  # every core at once
    for core in cores:
        rows.append(_summarise("all cores", core, rates[core], use[core], steal, args.step_s))
    pairs = [(a, b) for i, a in enumerate(cores) for b in cores[i + 1:]]
    summary = {
        "seconds_per_condition": args.seconds, "step_s": args.step_s, "slow_share_rule": SLOW_SHARE,
        "median_cv_1s_pct": round(statistics.median(float(r["cv_1s_pct"]) for r in rows), 1),
        "median_cv_4s_pct": round(statistics.median(float(r["cv_4s_pct"]) for r in rows), 1),
        "median_slow_block_share": statistics.median(float(r["slow_block_share"]) for r in rows),
        "cross_core_correlation": {f"{a}-{b}": round(_correlation(rates[a], rates[b]), 3) for a, b in pairs},
        "steal_ticks_total": sum(int(r["steal_ticks"]) for r in rows if r["condition"] == "alone") + steal,
    }
    path = write_results("host_speed", rows, summary)
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, indent=2))
        return
    print(f"fixed work timed per {args.step_s:g} s block, {args.seconds:g} s per condition, nothing else meant to run")
    for r in rows:
        print(f"  {r['condition']:>9} core {r['core']}: cv {r['cv_0.25s_pct']}% per 0.25 s, {r['cv_1s_pct']}% per 1 s, "
              f"{r['cv_4s_pct']}% per 4 s; slowest block {r['min_of_p90']}x of p90; "
              f"{100 * float(r['slow_block_share']):.0f}% of blocks below {SLOW_SHARE}x; "
              f"cpu/wall {r['cpu_s_per_wall_s']}")
    print(f"cores' speeds correlated: {summary['cross_core_correlation']} (near 0: each core slows on its own)")
    steal_s = int(summary["steal_ticks_total"]) / os.sysconf("SC_CLK_TCK")
    print(f"steal time the guest saw: {steal_s:.2f} s in {args.seconds * (len(cores) + 1):g} s of runs; the workers' cpu/wall "
          f"{min(float(r['cpu_s_per_wall_s']) for r in rows)}-{max(float(r['cpu_s_per_wall_s']) for r in rows)} "
          "(near 0 s and 1.0 while blocks slow down: CPU accounting does not see it)")
    print(f"floor under a measuring window here: cv {summary['median_cv_1s_pct']}% over 1 s, "
          f"{summary['median_cv_4s_pct']}% over 4 s (median over cores and conditions)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
