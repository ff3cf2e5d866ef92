"""`tuner check-machine`: how steady this machine's CPUs are, before trusting figures measured on it."""

from __future__ import annotations

import argparse
import json

from tuner.errors import TunerError


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


def run(args: argparse.Namespace) -> int:
    from tuner.runner.host_speed import describe, measure

    try:
        h = measure(args.seconds, args.step_s)
    except ValueError as e:
        raise TunerError(f"check-machine: {e}. For example: tuner check-machine --seconds 15 --step-s 0.25") from e
    if args.json:
        print(json.dumps(h.to_json(), indent=2))
    else:
        print("\n".join(describe(h)))
    return 1 if args.fail_unsteady and not h.steady else 0
