"""What several commands share: the --storage and load flags, picking the study to read, and keeping a
--json command's standard output for its JSON."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from tuner.errors import TunerError
from tuner.models.inputs import ModelOptions
from tuner.streams import fd_redirected
from tuner.study.storage import DEFAULT_STORAGE, load_study, open_storage, study_names


def storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}, a file in the current directory; "
                        "postgresql://... for many machines)")


def artifacts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                   help="the study's artifact store, where its report is uploaded for the dashboard (default: "
                        "beside a SQLite storage, FILE.db.artifacts/; ./tuner-artifacts for other storages)")


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
    onnx_input_args(p)


def onnx_input_args(p: argparse.ArgumentParser) -> None:
    """What a user says about an ONNX file's inputs, fidelity and data (see docs/models.md)."""
    g = p.add_argument_group("ONNX files (see docs/models.md)")
    g.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                   help="shape of one instance of a dynamic ONNX input, without the batch dim "
                        "(e.g. x:3,224,224); repeat per input")
    g.add_argument("--batch-axis", action="append", metavar="NAME:K",
                   help="the input's batch axis when it is not 0 (e.g. state:1); clients send it batch first")
    g.add_argument("--fixed-input", action="append", metavar="NAME=VALUE",
                   help="feed every element of an input VALUE on every call (a sample rate, a zero state: "
                        "sr=16000, state=0); it leaves the interface. A scalar input must be fixed")
    g.add_argument("--fidelity", default="auto", choices=["auto", "centred-l2", "sequence", "cosine"],
                   help="how a variant's outputs are compared with fp32's when there are no labels "
                        "(default auto: sequence for [T, C] outputs, else centred-l2)")
    g.add_argument("--calibration-data", default=None, metavar="FILE.npz|DIR",
                   help="your own inputs for int8 calibration and fidelity: a folder of images (one image "
                        "input), or a .npz with one array per input, instances first (default: photographs, "
                        "audio-like or random inputs by shape)")


def model_options(args: argparse.Namespace) -> ModelOptions:
    from tuner.models.inputs import parse_batch_axes, parse_fixed
    from tuner.models.onnx_file import parse_input_shapes

    return ModelOptions(parse_input_shapes(args.input_shape), parse_batch_axes(args.batch_axis),
                        parse_fixed(args.fixed_input), args.fidelity, args.calibration_data)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While the block runs, whatever is written to standard output goes to standard error, at the
    file-descriptor level: Ray prints some messages of its own there from its threads and its C++
    core (e.g. a retried ServeController.graceful_shutdown during serve.shutdown), and a --json
    command's standard output must hold its JSON alone."""
    with fd_redirected(1, 2):
        yield


def pick_study(name: str | None, storage: str | None) -> optuna.Study:
    """The study named, or the only one in the storage."""
    if name is None:
        names = study_names(open_storage(storage, create=False))
        if len(names) != 1:
            raise TunerError(f"Pass --study NAME: the storage {storage or DEFAULT_STORAGE} holds "
                             f"{len(names)} studies ({', '.join(names) or 'none'}).")
        name = names[0]
    return load_study(name, storage)
