"""Command line: tune, show, dashboard, promote, serve. `tuner COMMAND --help` for each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tuner import __version__, cli_estimate, cli_report, interrupts
from tuner.errors import TunerError
from tuner.storage import DEFAULT_STORAGE

EPILOG = """typical session:
  tuner tune --model digits-cnn --trials 24      measure configurations (Ray + ONNX Runtime)
  tuner show --study digits-cnn                  the trials and the feasible Pareto front
  tuner dashboard                                browse the study in optuna-dashboard
  tuner promote --study digits-cnn --out serve_config.yaml
  tuner serve serve_config.yaml                  Ray Serve, KServe V2 REST on 127.0.0.1:8000
"""


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}, a file in the current directory; "
                        "postgresql://... for many machines)")


def _load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--load-mode", choices=["offline", "server"], default=None,
                   help="offline: closed loop, saturating (MLPerf Offline); server: Poisson arrivals at "
                        "--target-rps (MLPerf Server). Default: the search space's load.mode")
    p.add_argument("--target-rps", type=float, default=None, help="arrival rate for --load-mode server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner", description="Find the best way to deploy an ML model, then deploy it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("tune", help="run (or continue) a tuning study on a Ray cluster",
                       description="Search platform, precision, batch size and replicas jointly; measure CPU "
                                   "trials for real on Ray, price FPGA trials with the cost model (ESTIMATED).")
    p.add_argument("--model", default="digits-cnn",
                   help="built-in model (digits-cnn, resnet18) or a path to an .onnx file (default digits-cnn)")
    p.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                   help="shape of one instance of a dynamic ONNX input, without the batch dim "
                        "(e.g. x:3,224,224); repeat per input")
    p.add_argument("--space", default="default",
                   help="search space: a shipped name (default) or a path to a YAML file")
    p.add_argument("--study", default=None, help="study name (default: the model's name)")
    _storage_arg(p)
    p.add_argument("--trials", type=int, default=24,
                   help="run until the study has this many COMPLETE trials (default 24)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join an existing Ray cluster (e.g. 10.0.0.5:6379) instead of starting a local one")
    p.add_argument("--seed", type=int, default=None, help="sampler seed, for a reproducible sequence")
    p.add_argument("--parallel", type=int, default=1, metavar="K",
                   help="keep up to K trials in flight (each on its own cores; default 1)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure a configuration again even if the study already measured it")
    p.add_argument("--finalists", type=int, default=3, metavar="K",
                   help="re-measure the K best measured Pareto trials before ending (default 3; 0 = off)")
    p.add_argument("--finalist-repeats", type=int, default=3, metavar="N",
                   help="extra measurements of each finalist, interleaved (default 3)")
    p.add_argument("--sampler", default="default", choices=["default", "tpe", "gp", "nsga2", "random", "grid"],
                   help="search strategy (default: tuner's structured sampler; see README)")
    p.add_argument("--timeout-s", type=float, default=None, metavar="S",
                   help="stop asking for new trials after S seconds (running ones finish)")
    p.add_argument("--patience", type=int, default=None, metavar="K",
                   help="stop when the feasible front's hypervolume has not improved for K trials")
    p.add_argument("--exclusive-hosts", action="store_true",
                   help="give each measured trial its whole machine (by default parallel trials share a "
                        "machine on distinct cores; measured here to differ < 10%% from a trial alone)")
    p.add_argument("--warm-start", default=None, metavar="STUDY",
                   help="start a new study by measuring the Pareto configurations of an earlier study (same storage)")
    _load_args(p)

    p = sub.add_parser("measure", help="measure (or estimate, on FPGA) one configuration, no study",
                       description="Measure one configuration with the same code path as a trial.")
    p.add_argument("--model", default="digits-cnn", help="built-in model or a path to an .onnx file")
    p.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                   help="shape of one instance of a dynamic ONNX input, without the batch dim")
    p.add_argument("--platform", required=True, choices=["cpu", "gpu", "fpga"])
    p.add_argument("--precision", required=True, choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--replicas", default="1", help="replicas (CPU processes, FPGA DPU cores); 'max' on FPGA = every core")
    p.add_argument("--threads-per-replica", type=int, default=1, help="CPU threads per replica (default 1)")
    p.add_argument("--device", default=None, help="FPGA device from the catalog (default aws-f1)")
    p.add_argument("--space", default="default", help="search space whose measurement, load and prices apply")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="join an existing Ray cluster")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _load_args(p)

    p = sub.add_parser("show", help="print a study's trials and its feasible Pareto front",
                       description="Print the trials of a study; --json prints the machine-readable record.")
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    _storage_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study storage (127.0.0.1)",
                       description="Serve optuna-dashboard for the storage; bound to 127.0.0.1 unless --host says otherwise.")
    _storage_arg(p)
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")

    p = sub.add_parser("promote", help="choose a feasible Pareto trial and write a Ray Serve config",
                       description="Choose a trial (default policy: cheapest feasible Pareto trial this "
                                   "machine can serve) and write a Ray Serve config for it.")
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    _storage_arg(p)
    p.add_argument("--trial", type=int, default=None, help="promote this trial number instead of the policy's pick")
    p.add_argument("--policy", default="cheapest", choices=["cheapest", "fastest", "lowest-latency", "knee"],
                   help="cheapest meeting the SLO (default), fastest / lowest-latency within --max-cost, or "
                        "knee (closest to the ideal point)")
    p.add_argument("--slo-ms", type=float, default=None, help="p95 SLO for the choice (default: the study's)")
    p.add_argument("--max-cost", type=float, default=None, metavar="USD", help="cost budget per million inferences")
    p.add_argument("--dry-run", action="store_true", help="print the choice, why, and the runners-up; write nothing")
    p.add_argument("--out", type=Path, default=Path("serve_config.yaml"), help="where to write the Serve config")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host the server will bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port the server will use (default 8000)")
    p.add_argument("--deploy", action="store_true",
                   help="deploy to a running Ray cluster (tuner's local serving cluster unless --ray-address), "
                        "detached, then verify it under load and roll back if it falls short")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --deploy: the cluster's dashboard (http://HOST:8265) or HOST:PORT (dashboard on 8265)")
    p.add_argument("--verify-s", type=float, default=15.0, help="seconds of verification load (0: skip; default 15)")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="verification passes within this share of the trial's throughput and p95 (default 0.10)")

    p = sub.add_parser("rollback", help="redeploy the promotion that was active before the current one",
                       description="Restore the previous promotion of a study (a rolling update: no request fails).")
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    _storage_arg(p)
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="the cluster's dashboard (default: tuner's local serving cluster)")

    p = sub.add_parser("undeploy", help="stop tuner's local serving cluster",
                       description="Shut down Serve and the local Ray cluster that tuner promote --deploy started.")

    p = sub.add_parser("serve", help="run a Serve config in the foreground (same as `serve run CONFIG`)",
                       description="Run the promoted Ray Serve application in the foreground; Ctrl-C stops it.")
    p.add_argument("config", type=Path, help="Serve config written by tuner promote")
    p.add_argument("--ray-address", default="local", metavar="ADDR",
                   help="Ray cluster to run on (default: start a new local one)")
    cli_estimate.add_parser(sub)
    cli_report.add_parser(sub)
    return parser


def _cmd_tune(args: argparse.Namespace) -> int:
    from tuner.models.onnx_file import parse_input_shapes
    from tuner.tune import TuneOptions, tune

    opts = TuneOptions(model=args.model, input_shapes=parse_input_shapes(args.input_shape), space=args.space,
                       study=args.study, storage=args.storage, trials=args.trials, parallel=args.parallel,
                       ray_address=args.ray_address, seed=args.seed, remeasure=args.remeasure,
                       finalists=args.finalists, finalist_repeats=args.finalist_repeats,
                       load_mode=args.load_mode, target_rps=args.target_rps, sampler=args.sampler,
                       timeout_s=args.timeout_s, patience=args.patience, warm_start=args.warm_start,
                       exclusive_hosts=args.exclusive_hosts)
    study = tune(opts)
    where = f" --storage {args.storage}" if args.storage else ""
    print(f"\nnext: tuner show --study {study.study_name}{where}  |  tuner dashboard{where}  |  "
          f"tuner promote --study {study.study_name}{where} --out serve_config.yaml")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from tuner.config import TrialConfig
    from tuner.measure import MeasureOptions, measure
    from tuner.models.onnx_file import parse_input_shapes

    if args.replicas == "max" and args.platform == "fpga":
        replicas = 0
    else:
        try:
            replicas = int(args.replicas)
        except ValueError:
            raise TunerError(f"Got {args.replicas!r} for --replicas. Use a positive integer (or 'max' on fpga).") from None
    device = (args.device or "aws-f1") if args.platform == "fpga" else args.device
    config = TrialConfig(args.platform, args.batch_size, args.precision, replicas,
                         args.threads_per_replica if args.platform == "cpu" else 1, device)
    opts = MeasureOptions(config, args.model, parse_input_shapes(args.input_shape), args.space,
                          args.ray_address, args.load_mode, args.target_rps)
    result = measure(opts, log=(lambda s: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m, meas = result["metrics"], result["measurement"]
    kind = "ESTIMATED by the FPGA cost model" if m["estimated"] else "measured"
    print(f"{config.label()} ({kind}):")
    print(f"  throughput {m['throughput_rps']:,.1f} inf/s; latency p50 {m['latency_p50_ms']:.3f} ms, "
          f"p95 {m['latency_p95_ms']:.3f} ms, p99 {m['latency_p99_ms']:.3f} ms")
    print(f"  accuracy {m['accuracy']:.4f}; ${m['cost_usd_per_million']:.5f} per million ({result['price']['source']})")
    if not m["estimated"]:
        print(f"  {meas['requests']} requests in {meas['windows_used']} of {meas['windows']} windows of "
              f"{meas['window_s']} s ({'stable' if meas['stable'] else 'NOT stable'}, cv {meas['throughput_cv']:.1%}); "
              f"{meas['measuring_s']} s under load, {meas['wall_s']} s in all; cores {meas['hardware']['cores_used']}")
    return 0


def _pick_study(name: str | None, storage: str | None):
    import optuna

    from tuner.storage import load_study, open_storage

    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage, create=False))]
        if len(names) != 1:
            raise TunerError(f"Pass --study NAME: the storage {storage or DEFAULT_STORAGE} holds "
                             f"{len(names)} studies ({', '.join(names) or 'none'}).")
        name = names[0]
    return load_study(name, storage)


def _cmd_show(args: argparse.Namespace) -> int:
    from tuner.records import study_record
    from tuner.table import format_table

    study = _pick_study(args.study, args.storage)
    record = study_record(study)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    model = study.user_attrs.get("model", {})
    trials = record["trials"]
    print(f"study {study.study_name!r}: model {model.get('name')} ({model.get('source')}), "
          f"{len(trials)} trials; accuracy = {model.get('accuracy_metric')}, fp32 "
          f"{study.user_attrs.get('fp32_accuracy', float('nan')):.4f}")
    print(f"objectives: {', '.join(f'{o} ({d})' for o, d in zip(record['objectives'], record['directions']))}")
    print("FPGA rows are ESTIMATED by the DPU cost model; CPU rows are measured.\n")
    print(format_table(trials))
    print(f"\nfeasible Pareto front: {[t['number'] for t in trials if t['pareto']]}")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from tuner.dashboard import run_dashboard

    return run_dashboard(args.storage, args.host, args.port)


def _cmd_promote(args: argparse.Namespace) -> int:
    from tuner.promote import promote

    study = _pick_study(args.study, args.storage)
    result = promote(study, args.out, args.trial, args.policy, args.host, args.port, slo_ms=args.slo_ms,
                     max_cost=args.max_cost, dry_run=args.dry_run)
    t, c = result.choice.trial, result.config
    m = t["metrics"]
    if result.choice.better_unservable:
        b = result.choice.better_unservable
        print(f"note: trial #{b['number']} ({b['config']['platform']}, ESTIMATED) ranks first by this policy, "
              f"but {b['config']['platform']} trials cannot be served on this machine; promoting the best "
              f"servable trial #{t['number']} instead.")
    print(f"promoted trial #{t['number']}: {c.label()} ({result.choice.reason})")
    print(f"  measured: {m['throughput_rps']:,.0f} inf/s, p95 {m['latency_p95_ms']:.3f} ms, "
          f"accuracy {m['accuracy']:.4f}, ${m['cost_usd_per_million']:.5f} per million")
    for r in result.choice.runners_up:
        rm = r["metrics"]
        print(f"  runner-up #{r['number']}: {r['config']['platform']} {r['config']['precision']} b{r['config']['batch_size']} "
              f"{r['config']['replicas']}x{r['config']['threads_per_replica']}: {rm['throughput_rps']:,.0f} inf/s, "
              f"p95 {rm['latency_p95_ms']:.3f} ms, ${rm['cost_usd_per_million']:.5f}/M")
    if args.dry_run:
        print("dry run: nothing written or deployed")
        return 0
    print(f"wrote {args.out}")
    if not args.deploy:
        print(f"next: tuner serve {args.out}   (or: serve run {args.out}; or tuner promote ... --deploy)")
        return 0
    from tuner.promotion import deploy_promotion

    entry = deploy_promotion(study, result, address=args.ray_address, verify_s=args.verify_s, tolerance=args.tolerance)
    if entry.get("rolled_back_to") is not None:
        print(f"promotion of trial #{t['number']} FAILED verification; trial #{entry['rolled_back_to']} is serving again")
        return 1
    print("stop the local serving cluster with: tuner undeploy")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from tuner.promotion import rollback

    target = rollback(_pick_study(args.study, args.storage), args.ray_address)
    print(f"trial #{target['trial']} is serving again")
    return 0


def _cmd_undeploy(args: argparse.Namespace) -> int:
    from serving.deploy import stop_local_cluster

    print("stopped tuner's local serving cluster" if stop_local_cluster() else "no local serving cluster was running")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from serving.run import serve_foreground

    return serve_foreground(args.config, address=args.ray_address)


COMMANDS = {"tune": _cmd_tune, "measure": _cmd_measure, "show": _cmd_show, "dashboard": _cmd_dashboard,
            "promote": _cmd_promote, "rollback": _cmd_rollback, "undeploy": _cmd_undeploy, "serve": _cmd_serve,
            "estimate": cli_estimate.run, "report": cli_report.run}


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
        code = COMMANDS[args.command](args)
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
