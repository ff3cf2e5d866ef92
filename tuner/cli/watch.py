"""`tuner watch`: follow the promoted deployment live; say when it drifts and what fits instead."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.cli.common import pick_study, study_arg


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("watch", help="follow the promoted deployment live; say when it drifts",
                       description="Read the live deployment's metrics (Ray's Prometheus endpoint) every few "
                                   "seconds, compare them with the promoted trial's measured figures and the study's "
                                   "SLO, print a status line, and on a drift (overload, p95 above the SLO, errors, "
                                   "or a cheaper configuration that would do) name the study's configuration that "
                                   "fits the observed load.")
    study_arg(p)
    p.add_argument("--interval-s", type=float, default=3.0, metavar="S",
                   help="seconds between reads (default 3; at least Ray's metrics export interval, 2 s on tuner's "
                        "serving cluster)")
    p.add_argument("--duration-s", type=float, default=None, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--underused-s", type=float, default=60.0, metavar="S",
                   help="a cheaper configuration must keep fitting this long before it is reported (default 60)")
    p.add_argument("--metrics-url", default=None, metavar="URL",
                   help="Ray's metrics endpoint, http://HEAD:PORT/metrics (default: that of tuner's local serving "
                        "cluster, which fixes the port)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--apply", action="store_true",
                     help="on a drift, promote the configuration that fits (a rolling update: the old replicas "
                          "serve until the new ones run), then keep watching it")
    act.add_argument("--retune", action="store_true",
                     help="on a drift, start a new study warm-started from this one, in server mode at the "
                          "observed rate (tuner tune --warm-start ... --load-mode server --target-rps R)")
    p.add_argument("--retune-trials", type=int, default=12, metavar="N",
                   help="with --retune: trials of the new study (default 12; its warm start's re-measurements count)")
    p.add_argument("--out", type=Path, default=Path("serve_config.yaml"),
                   help="with --apply: where the new Serve config is written (default serve_config.yaml)")
    p.add_argument("--verify-s", type=float, default=0.0, metavar="S",
                   help="with --apply: seconds of verification load after the switch (default 0: a synthetic load "
                        "would compete with the live traffic; the live figures that follow verify it)")
    p.add_argument("--auth-token-file", type=Path, default=None, metavar="FILE",
                   help="the bearer token the deployment was promoted with (needed only with --apply --verify-s > 0 "
                        "on an authenticated endpoint; checked against the deployment's digest at the start)")
    return p


def run(args: argparse.Namespace) -> int:
    from serving.auth import read_token_file
    from tuner.deploy.watch import Watcher, WatchOptions
    from tuner.errors import field_error

    if args.retune_trials < 1:
        raise field_error("--retune-trials", args.retune_trials, "It must be at least 1.", "Pass e.g. 12.")
    for name in ("interval_s", "underused_s", "duration_s"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise field_error(f"--{name.replace('_', '-')}", value, "It must be a positive number of seconds.",
                              "Pass e.g. 3.")
    token = None if args.auth_token_file is None else read_token_file(args.auth_token_file)
    study = pick_study(args.study, args.storage)
    options = WatchOptions(interval_s=args.interval_s, duration_s=args.duration_s, underused_s=args.underused_s,
                           apply=args.apply, retune=args.retune, metrics_url=args.metrics_url, out=args.out,
                           verify_s=args.verify_s, storage=args.storage, retune_trials=args.retune_trials,
                           auth_token=token)
    return Watcher(study, options, log=lambda line: print(line, flush=True)).run()
