"""`tuner dashboard`: optuna-dashboard on the study storage, bound to 127.0.0.1 by default."""

from __future__ import annotations

import argparse

from tuner.cli.common import artifacts_arg, storage_arg


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study storage (127.0.0.1)",
                       description="Serve optuna-dashboard for the storage; bound to 127.0.0.1 unless --host says otherwise.")
    storage_arg(p)
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    artifacts_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tuner.study.dashboard import run_dashboard

    return run_dashboard(args.storage, args.host, args.port, args.artifacts)
