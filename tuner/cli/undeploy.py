"""`tuner undeploy`: stop the local serving cluster that `tuner promote --deploy` started."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("undeploy", help="stop tuner's local serving cluster",
                          description="Shut down Serve and the local Ray cluster that tuner promote --deploy started.")


def run(args: argparse.Namespace) -> int:
    from serving.deploy import stop_local_cluster

    print("stopped tuner's local serving cluster" if stop_local_cluster() else "no local serving cluster was running")
    return 0
