"""`tuner check-machine`: how steady this machine's CPUs are, before trusting figures measured on it."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from tuner.errors import TunerError

if TYPE_CHECKING:
    from tuner.runner.host_speed import HostSpeed


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check-machine", help="how steady this machine's CPUs are (the floor under every figure measured here)",
        description="Time a fixed amount of pure-Python work per block, on one core alone and then on "
                    "every core at once (each worker pinned), and print how much the speed varies. Run it "
                    "with nothing else running. A VM's host may slow its cores in episodes its CPU accounting does not show; "
                    "no measuring window can be steadier than the machine. STEADY when the median speed CV "
                    "over 4 s blocks is at most 5% and no other work took the workers' CPU time (else BUSY).")
    p.add_argument("--seconds", type=float, default=15.0,
                   help="per condition: one core alone, then every core at once (default 15, at least 8; "
                        "30 for a firmer figure)")
    p.add_argument("--step-s", type=float, default=0.25, help="timing block (default 0.25 s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fail-unsteady", action="store_true", help="exit 1 when the machine is UNSTEADY or BUSY")
    return p


def to_json(h: HostSpeed) -> dict[str, Any]:
    """The machine-readable record (`--json`; experiments/host_speed.py writes it too)."""
    from tuner.runner.host_speed import BLOCKS_S, BUSY_CPU_PER_WALL, SLOW_SHARE, STEADY_CV_4S_PCT

    cores = [{"condition": c.condition, "core": c.core, "blocks": len(c.rates_per_s),
              **{f"cv_{b:g}s_pct": round(c.cv_pct(b), 2) for b in BLOCKS_S},
              "slowest_of_p90": round(c.slowest_of_p90, 3), "slow_block_share": round(c.slow_block_share, 3),
              "cpu_s_per_wall_s": round(c.cpu_s_per_wall_s, 4)} for c in h.cores]
    return {"steady": h.steady, "busy": h.busy,
            "steady_rule": f"not busy and median cv_4s_pct <= {STEADY_CV_4S_PCT}",
            "busy_rule": f"a worker's cpu_s_per_wall_s below {BUSY_CPU_PER_WALL}",
            "median_cv_1s_pct": round(h.median_cv_pct(1.0), 2), "median_cv_4s_pct": round(h.median_cv_pct(4.0), 2),
            "slow_rule": f"a block below {SLOW_SHARE}x of its core's 90th-percentile speed",
            "seconds_per_condition": h.seconds_per_condition, "steal_s": round(h.steal_s, 3), "cores": cores}


def run(args: argparse.Namespace) -> int:
    from tuner.runner.host_speed import describe, measure

    try:
        h = measure(args.seconds, args.step_s)
    except ValueError as e:
        raise TunerError(f"check-machine: {e}. For example: tuner check-machine --seconds 15 --step-s 0.25") from e
    if args.json:
        print(json.dumps(to_json(h), indent=2))
    else:
        print("\n".join(describe(h)))
    return 1 if args.fail_unsteady and not h.steady else 0
