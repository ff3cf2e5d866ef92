"""The command line: `tuner COMMAND`, one module per command (`tuner COMMAND --help` for each).

Each command module has `add_parser(subparsers)` and `run(args) -> exit code`; this file builds
the parser from them and turns a `TunerError` into a message and its exit code.

May import: every package of tuner and serving (this is the top floor); nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from tuner import __version__
from tuner.cli import (
    check_machine,
    dashboard,
    estimate,
    measure,
    promote,
    report,
    rollback,
    serve,
    show,
    tune,
    undeploy,
    watch,
)
from tuner.errors import TunerError
from tuner.study import interrupts

EPILOG = """typical session:
  tuner tune --model digits-cnn --trials 24      measure configurations (Ray + ONNX Runtime)
  tuner show --study digits-cnn                  the trials and the feasible Pareto front
  tuner dashboard                                browse the study in optuna-dashboard
  tuner promote --study digits-cnn --out serve_config.yaml
  tuner serve serve_config.yaml                  Ray Serve, KServe V2 REST on 127.0.0.1:8000
  tuner watch --study digits-cnn                 after promote --deploy: the deployment live, what fits instead
"""

#: In the order `tuner --help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "tune": tune, "measure": measure, "show": show, "dashboard": dashboard, "promote": promote,
    "rollback": rollback, "undeploy": undeploy, "serve": serve, "watch": watch, "estimate": estimate,
    "report": report, "check-machine": check_machine,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner", description="Find the best way to deploy an ML model, then deploy it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _quiet_libraries() -> None:
    """Keep the terminal for tuner's own lines: Optuna's experimental-API warnings and
    per-trial INFO logs say nothing a user can act on."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    if args.command != "serve":  # serve forwards signals to `serve run` itself
        interrupts.install()
    try:
        code = int(COMMANDS[args.command].run(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except TunerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: trials in flight were cancelled and recorded as FAIL; measured trials are saved "
              "in the storage. Rerun the same command to continue the study.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
