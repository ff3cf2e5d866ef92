"""What several commands share: the --storage and load flags, and picking the study to read."""

from __future__ import annotations

import argparse

import optuna

from tuner.errors import TunerError
from tuner.study.storage import DEFAULT_STORAGE, load_study, open_storage


def storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}, a file in the current directory; "
                        "postgresql://... for many machines)")


def study_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    storage_arg(p)


def load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--load-mode", choices=["offline", "server"], default=None,
                   help="offline: closed loop, saturating (MLPerf Offline); server: Poisson arrivals at "
                        "--target-rps (MLPerf Server). Default: the search space's load.mode")
    p.add_argument("--target-rps", type=float, default=None, help="arrival rate for --load-mode server")


def model_args(p: argparse.ArgumentParser, help_model: str) -> None:
    p.add_argument("--model", default="digits-cnn", help=help_model)
    p.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                   help="shape of one instance of a dynamic ONNX input, without the batch dim "
                        "(e.g. x:3,224,224); repeat per input")


def pick_study(name: str | None, storage: str | None) -> optuna.Study:
    """The study named, or the only one in the storage."""
    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage, create=False))]
        if len(names) != 1:
            raise TunerError(f"Pass --study NAME: the storage {storage or DEFAULT_STORAGE} holds "
                             f"{len(names)} studies ({', '.join(names) or 'none'}).")
        name = names[0]
    return load_study(name, storage)
