"""`tuner tune`: run (or continue) a tuning study on a Ray cluster, then print its front."""

from __future__ import annotations

import argparse

import optuna

from tuner.cli.common import artifacts_arg, load_args, model_args, model_options, storage_arg
from tuner.cli.table import fastest_first, format_table, legends
from tuner.front.selection import measured_front
from tuner.search.samplers import SAMPLERS
from tuner.study.readback import study_record


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", help="run (or continue) a tuning study on a Ray cluster",
                       description="Search platform, precision, batch size and replicas jointly; measure CPU "
                                   "trials for real on Ray, price FPGA trials with the cost model (ESTIMATED).")
    model_args(p, "built-in model (digits-cnn, resnet18) or a path to an .onnx file (default digits-cnn)")
    p.add_argument("--space", default="default",
                   help="search space: a shipped name (default) or a path to a YAML file")
    p.add_argument("--study", default=None, help="study name (default: the model's name)")
    storage_arg(p)
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
    p.add_argument("--sampler", default="default", choices=list(SAMPLERS),
                   help="search strategy (default: tuner's structured sampler; see docs/search.md)")
    p.add_argument("--timeout-s", type=float, default=None, metavar="S",
                   help="stop asking for new trials after S seconds (running ones finish)")
    p.add_argument("--patience", type=int, default=None, metavar="K",
                   help="stop when the feasible front's hypervolume has not improved for K trials")
    p.add_argument("--exclusive-hosts", action="store_true",
                   help="give each measured trial its whole machine (by default parallel trials share a "
                        "machine on distinct cores; measured here to differ < 10%% from a trial alone)")
    p.add_argument("--warm-start", default=None, metavar="STUDY",
                   help="start a new study by measuring the Pareto configurations of an earlier study (same storage)")
    p.add_argument("--measure", choices=["served", "engine"], default=None,
                   help="served: through the Ray Serve app promote deploys, over HTTP (what you get); engine: ONNX "
                        "Runtime in a bench process (faster, the ceiling). Default: the search space's measure "
                        "(served in the shipped spaces). Finalists are always re-measured served")
    p.add_argument("--num-gpus", type=int, default=None, metavar="N",
                   help="GPUs the local Ray cluster declares (default: the GPUs Ray detects); with "
                        "--gpu-backend test-cpu, a machine without a GPU runs gpu trials for tests")
    p.add_argument("--gpu-backend", choices=["ort", "test-cpu"], default="ort",
                   help="how gpu trials run: ort (default: ONNX Runtime's CUDA provider, TensorRT for int8, as "
                        "the served app runs them); test-cpu: FOR TESTS ONLY, ONNX Runtime on the CPU behind a "
                        "declared GPU (figures are CPU figures, labelled test_backend)")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                   help="before starting, wait up to S seconds for the machine to settle (other work using at most "
                        "25%% of its cores); a busy start is reported either way")
    load_args(p)
    artifacts_arg(p)
    return p


def print_front(study: optuna.Study) -> None:
    """The feasible Pareto front, fastest first."""
    record = study_record(study)
    front = record.front
    complete = sum(r.state == "COMPLETE" for r in record.trials)
    print(f"\nFeasible Pareto front of {study.study_name!r} ({len(front)} of {complete} complete trials; "
          "ESTIMATED rows come from the FPGA cost model, not a measurement; finalists show the median "
          "of their re-measurements):")
    print(format_table(fastest_first(front)) if front
          else "(empty: no feasible trial yet)")
    for line in legends(front):
        print(line)
    measured = measured_front(record.trials, record.objectives)
    if measured and any(r.estimated for r in front):
        print("\nFront of the measured trials (what promote chooses from on this machine; estimates left out):")
        print(format_table(fastest_first(tuple(measured))))


def publish(study: optuna.Study, args: argparse.Namespace) -> None:
    """The report, uploaded for the dashboard; the study is kept whatever happens here."""
    from tuner.errors import TunerError
    from tuner.front.selection import SERVABLE
    from tuner.report.publish import publish_report

    try:
        published = publish_report(study, args.storage, SERVABLE, artifacts=args.artifacts)
    except TunerError as exc:
        print(f"warning: the report was not uploaded for the dashboard: {exc}")
        return
    print(f"\nreport: uploaded to the study's artifacts in {published.store}/ (tuner dashboard opens it; "
          f"tuner report --study {study.study_name} --out DIR writes it as files)")


def run(args: argparse.Namespace) -> int:
    from tuner.study.tune import TuneOptions, tune

    opts = TuneOptions(model=args.model, model_options=model_options(args), space=args.space,
                       study=args.study, storage=args.storage, trials=args.trials, parallel=args.parallel,
                       ray_address=args.ray_address, seed=args.seed, remeasure=args.remeasure,
                       finalists=args.finalists, finalist_repeats=args.finalist_repeats,
                       load_mode=args.load_mode, target_rps=args.target_rps, sampler=args.sampler,
                       timeout_s=args.timeout_s, patience=args.patience, warm_start=args.warm_start,
                       exclusive_hosts=args.exclusive_hosts, measure=args.measure, num_gpus=args.num_gpus,
                       gpu_backend=args.gpu_backend, wait_quiet_s=args.wait_quiet)
    study = tune(opts)
    print_front(study)
    publish(study, args)
    where = f" --storage {args.storage}" if args.storage else ""
    print(f"\nnext: tuner show --study {study.study_name}{where}  |  tuner dashboard{where}  |  "
          f"tuner promote --study {study.study_name}{where} --out serve_config.yaml")
    return 0
