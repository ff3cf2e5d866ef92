"""`tuner rollback`: redeploy the promotion that was active before the current one."""

from __future__ import annotations

import argparse

from tuner.cli.common import pick_study, study_arg


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("rollback", help="redeploy the promotion that was active before the current one",
                       description="Restore the previous promotion of a study (a rolling update: no request fails).")
    study_arg(p)
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the cluster's dashboard (default: tuner's local serving cluster)")
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.deploy.rollout import rollback

    target = rollback(pick_study(args.study, args.storage), args.ray_address)
    print(f"trial #{target['trial']} is serving again")
    return 0
