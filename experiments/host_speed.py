"""Host speed: how steady is this machine's CPU when nothing else runs on it?

The same measurement as `tuner check-machine` (tuner/runner/host_speed.py), longer by default
and written to results/host_speed.{csv,json}: a fixed amount of pure-Python work timed per
block on each core, pinned, each core alone and then all at once; the steal time the guest saw
and the workers' CPU time against wall time show whether CPU accounting sees the slowdowns.

What it means for tuner: a measuring window of W seconds cannot be steadier than this
machine's speed over blocks of W seconds; the CV over 1 s and 4 s blocks is the floor under
every repeatability figure measured here (docs/measurement.md).

    python experiments/host_speed.py [--seconds 30] [--step-s 0.25]

Run it with nothing else running (it measures the machine, not tuner).
"""

from __future__ import annotations

import argparse

from common import write_results

from tuner.runner.host_speed import describe, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="per condition (default 30)")
    parser.add_argument("--step-s", type=float, default=0.25, help="timing block (default 0.25 s)")
    args = parser.parse_args()
    h = measure(args.seconds, args.step_s)
    record = h.to_json()
    rows = record.pop("cores")
    record["cross_core_correlation"] = {f"{a}-{b}": round(h.correlation(a, b), 3)
                                        for i, a in enumerate(sorted({c.core for c in h.cores}))
                                        for b in sorted({c.core for c in h.cores})[i + 1:]}
    path = write_results("host_speed", rows, record)
    print("\n".join(describe(h)))
    print(f"cores' speeds correlated when all were busy: {record['cross_core_correlation']} "
          "(near 0: each core slows on its own)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
