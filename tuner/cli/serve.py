"""`tuner serve CONFIG`: run a promoted Serve config in the foreground (same as `serve run CONFIG`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="run a Serve config in the foreground (same as `serve run CONFIG`)",
                       description="Run the promoted Ray Serve application in the foreground; Ctrl-C stops it.")
    p.add_argument("config", type=Path, help="Serve config written by tuner promote")
    p.add_argument("--ray-address", default="local", metavar="ADDR",
                   help="Ray cluster to run on (default: start a new local one)")
    p.add_argument("--num-gpus", type=int, default=None, metavar="N",
                   help="GPUs the new local cluster declares (default: the GPUs Ray detects); e.g. to serve a "
                        "gpu trial of the test backend on a machine without a GPU")
    p.add_argument("--no-auth", action="store_true",
                   help="serve a config whose http_options.host is not a loopback address although it requires "
                        "no bearer token (e.g. behind an authenticating proxy); without it such a config is "
                        "refused. It does not turn off a token the config requires")
    return p


def run(args: argparse.Namespace) -> int:
    from serving.run import serve_foreground

    return serve_foreground(args.config, address=args.ray_address, num_gpus=args.num_gpus, no_auth=args.no_auth)
