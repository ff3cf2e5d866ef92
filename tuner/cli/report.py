"""`tuner report --study NAME --out DIR`: write a study's HTML report (with PNG plots)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuner.cli.common import artifacts_arg
from tuner.errors import TunerError
from tuner.study.storage import DEFAULT_STORAGE

DESCRIPTION = (
    "Write an HTML report of a study into a folder: the Pareto front as an interactive plot (works "
    "offline: plotly.js is written next to the page), the chosen configuration and why, accuracy per "
    "precision, the prices used with their sources, the feasible Pareto trials (finalists' medians and "
    "spread; FPGA estimates marked (est.)), promotion history and study facts; PNG plots for offline readers. "
    "The page (as one file) and the PNGs are also uploaded as the study's Optuna artifacts, which tuner "
    "dashboard serves.")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `report` command to `tuner`'s subparsers; returns its parser."""
    p = subparsers.add_parser("report", help="write an HTML report of a study (plots, choice, costs, accuracy)",
                              description=DESCRIPTION)
    p.add_argument("--study", required=True, help="study name (tuner show lists a storage's trials)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}, a file in the current directory)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to write index.html, plotly.min.js and the PNGs into (created if missing)")
    artifacts_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the report; print where it is. A user error prints `error: ...` and returns its exit code (2)."""
    from tuner.front.selection import SERVABLE
    from tuner.report.publish import publish_report
    from tuner.study.storage import load_study

    try:
        study = load_study(args.study, args.storage)
        published = publish_report(study, args.storage, SERVABLE, args.out, args.artifacts)
    except TunerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    files = published.files
    assert files is not None
    print(f"wrote {files.html} (open it in a browser; works offline)")
    print(f"  plots as PNG: {', '.join(str(p) for p in files.pngs.values())}")
    print(f"  uploaded as the study's artifacts to {published.store}/ (tuner dashboard lists them on the study's page)")
    return 0

