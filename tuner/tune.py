"""`tuner tune`: prepare the model, open the study, run the trials, re-measure the finalists.

Rerunning the same command continues the study until it has `trials` COMPLETE trials.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import optuna

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.finalists import remeasure_finalists
from tuner.fpga.devices import load_devices
from tuner.loop import LoopContext, complete_count, run_trials
from tuner.memory import PeakMemory
from tuner.metrics import DIRECTIONS, OBJECTIVES
from tuner.models.prepare import model_name, prepare_model
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable, load_prices
from tuner.records import study_record
from tuner.runner import RayCluster, TrialRunner
from tuner.search_space import LoadSpec, SearchSpace, load_space
from tuner.seeds import seed_params
from tuner.storage import DEFAULT_STORAGE, open_storage
from tuner.table import format_table


@dataclass(frozen=True)
class TuneOptions:
    model: str = "digits-cnn"
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    space: str = "default"
    study: str | None = None
    storage: str | None = None
    trials: int = 24
    parallel: int = 1
    ray_address: str | None = None
    seed: int | None = None
    remeasure: bool = False
    finalists: int = 3
    finalist_repeats: int = 3
    load_mode: str | None = None
    target_rps: float | None = None


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE with a constant liar (for trials in flight); it reads the constraints
    set with `trial.set_constraint`."""
    return optuna.samplers.TPESampler(
        multivariate=True, group=True, constant_liar=True, n_startup_trials=10, seed=seed
    )


def resolve_load(space: SearchSpace, mode: str | None, target_rps: float | None) -> LoadSpec:
    """The space's load, with command-line overrides, validated."""
    data = space.load.model_dump()
    if mode is not None:
        data["mode"] = mode
    if target_rps is not None:
        data["target_rps"] = target_rps
    try:
        return LoadSpec.model_validate(data)
    except Exception as exc:
        raise TunerError(f"Invalid load: {exc}. Server mode needs --target-rps R (requests per second).") from None


def tune(opts: TuneOptions, log=print) -> optuna.Study:
    """Run (or continue) a study; returns it once it has `opts.trials` COMPLETE trials."""
    if opts.trials < 1 or opts.parallel < 1:
        raise TunerError(f"Got --trials {opts.trials} --parallel {opts.parallel}. Both must be >= 1.")
    space = load_space(opts.space)
    load = resolve_load(space, opts.load_mode, opts.target_rps)
    prices = load_prices(space.prices)
    devices = load_devices()
    storage = open_storage(opts.storage)  # fail on a bad URL before anything slow starts
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with PeakMemory() as memory:
        cluster = RayCluster(opts.ray_address)
        runner = None
        try:
            log(f"{cluster.describe()} (up in {cluster.start_s:.1f} s)")
            info = cluster.info({name: d.cores for name, d in devices.items()})
            for note in space.platform_notes(info):
                log(f"note: {note}")
            platforms = space.available_platforms(info)
            if not platforms:
                raise TunerError("No platform of the search space can run on this cluster (see the notes above).")
            check_prices(space, platforms, prices)
            precisions = {p for pl in platforms for p in getattr(space.platforms, pl).precision.choices}
            model = prepare_model(opts.model, opts.input_shapes, precisions, log)
            study = open_study(opts, storage, model, space, prices, load)
            runner = TrialRunner(model, space.measurement, load, devices, cluster)
            ctx = LoopContext(study, space, info, runner, model, prices, space.constraints.to_constraints(),
                              load, cluster.hardware_key(), opts.remeasure, log)
            if complete_count(study) == 0 and not study.get_trials(deepcopy=False):
                for params in seed_params(space, info):
                    study.enqueue_trial(params, skip_if_exists=True)
            done = complete_count(study)
            log(f"study {study.study_name!r}: {done} complete trials, running until {opts.trials}"
                f"{f' with {opts.parallel} in parallel' if opts.parallel > 1 else ''} ({load.mode} load)")
            stats = run_trials(ctx, opts.trials, opts.parallel)
            if stats.measured:  # a run that measured nothing new has nothing new to confirm
                remeasure_finalists(ctx, opts.finalists, opts.finalist_repeats)
        finally:
            if runner is not None:
                runner.shutdown()
            cluster.shutdown()
    _record_run(study, started, time.perf_counter() - t0, memory.peak_gib, opts, stats)
    _print_front(study, log)
    log(f"run: {stats.measured} measured, {stats.reused} reused, {stats.not_runnable} not runnable, "
        f"{stats.failed} failed in {time.perf_counter() - t0:.0f} s; peak memory "
        f"{memory.peak_gib:.2f} GiB (PSS of tuner{' and its local Ray cluster' if opts.ray_address is None else ''})")
    return study


def check_prices(space: SearchSpace, platforms: list[str], prices: PriceTable) -> None:
    for pl in platforms:
        devices = getattr(getattr(space.platforms, pl), "device", None)
        for dev in devices.choices if devices else [None]:
            prices.row(prices.key_for(TrialConfig(pl, 1, "int8", 1, 1, dev)))


def open_study(opts: TuneOptions, storage, model: PreparedModel, space: SearchSpace, prices: PriceTable,
               load: LoadSpec) -> optuna.Study:
    name = opts.study or model_name(opts.model)
    study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                                sampler=make_sampler(opts.seed), load_if_exists=True)
    known = study.user_attrs.get("model")
    if known is None:
        study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("model", model.to_dict())
        study.set_user_attr("fp32_accuracy", model.fp32_accuracy)
        study.set_user_attr("accuracy_metric", model.accuracy_metric)
        study.set_user_attr("search_space", space.model_dump(mode="json", exclude_none=True))
        study.set_user_attr("prices", prices.to_dict())
        study.set_user_attr("load", load.model_dump())
    else:
        old = {k: v["sha256"] for k, v in known["variants"].items()}
        new = {k: v.sha256 for k, v in model.variants.items()}
        if any(old.get(k) != new[k] for k in old if k in new):
            raise TunerError(
                f"Study {name!r} in {opts.storage or DEFAULT_STORAGE} was measured on a different build "
                f"of model {model.name!r} (its ONNX files differ). Its trials would not be comparable: "
                "pass --study NEW_NAME to start a new study.")
        if set(new) - set(old):
            merged = dict(known)
            merged["variants"] = {**known["variants"], **model.to_dict()["variants"]}
            study.set_user_attr("model", merged)
    optuna.storages.fail_stale_trials(study)  # trials a killed driver left RUNNING
    return study


def _record_run(study, started, wall_s, peak_gib, opts: TuneOptions, stats) -> None:
    runs = list(study.user_attrs.get("runs", []))
    runs.append({"started": started, "wall_s": round(wall_s, 1), "peak_memory_gib": round(peak_gib, 3),
                 "parallel": opts.parallel, "measured": stats.measured, "reused": stats.reused,
                 "not_runnable": stats.not_runnable, "failed": stats.failed})
    study.set_user_attr("runs", runs)


def _print_front(study: optuna.Study, log) -> None:
    records = study_record(study)["trials"]
    front = [r for r in records if r["pareto"]]
    complete = sum(r["state"] == "COMPLETE" for r in records)
    log(f"\nFeasible Pareto front of {study.study_name!r} ({len(front)} of {complete} complete trials; "
        "ESTIMATED rows come from the FPGA cost model, not a measurement; finalists show the median "
        "of their measurements):")
    log(format_table(sorted(front, key=lambda r: -r["metrics"]["throughput_rps"])) if front
        else "(empty: no feasible trial yet)")
