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
from tuner.metrics import directions_for
from tuner.models.prepare import check_model_arg, model_name, prepare_model
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable, load_prices
from tuner.records import study_record
from tuner.runner import RayCluster, TrialRunner
from tuner.samplers import SAMPLERS, SamplerContext, make_sampler
from tuner.search_space import LoadSpec, SearchSpace, load_space
from tuner.seeds import seed_params
from tuner.stopping import Stopper
from tuner.storage import DEFAULT_STORAGE, check_url, open_storage
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
    sampler: str = "default"
    timeout_s: float | None = None
    patience: int | None = None
    warm_start: str | None = None
    exclusive_hosts: bool = False


def sampler_context(space: SearchSpace, info, model: PreparedModel, prices: PriceTable, devices) -> SamplerContext:
    """What the default sampler knows before any trial: each variant's accuracy, and the cost
    model's prediction for every FPGA configuration (computed here; it takes a second)."""
    from tuner.evaluators.fpga import evaluate_fpga

    estimates = {}
    fpga = [c for c in space.enumerate(info) if c.platform == "fpga"]
    if fpga and "int8" in model.variants:
        data = open(model.variants["int8"].path, "rb").read()
        for c in fpga:
            perf = evaluate_fpga(data, model.input_shapes(1), c, devices[c.device])
            estimates[c] = {"throughput_rps": perf.throughput_rps, "latency_p95_ms": perf.latency_p95_ms,
                            "cost_usd_per_million": prices.cost_usd_per_million(c, perf.throughput_rps)}
    return SamplerContext(space, info, accuracy={p: v.accuracy for p, v in model.variants.items()},
                          fp32_accuracy=model.fp32_accuracy, estimates=estimates, usd_per_hour=prices.usd_per_hour,
                          accuracy_floor_ratio=space.constraints.accuracy_min_ratio,
                          slo_ms=space.constraints.latency_p95_ms_max)


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
    if opts.sampler not in SAMPLERS:
        raise TunerError(f"Got {opts.sampler!r} for --sampler. Choose one of: {', '.join(SAMPLERS)}.")
    space = load_space(opts.space)
    load = resolve_load(space, opts.load_mode, opts.target_rps)
    prices = load_prices(space.prices)
    devices = load_devices()
    check_model_arg(opts.model, opts.input_shapes)  # bad input fails before anything slow starts
    check_url(opts.storage)
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
            storage = open_storage(opts.storage)
            context = sampler_context(space, info, model, prices, devices) if opts.sampler == "default" else None
            study = open_study(opts, storage, model, space, prices, load, make_sampler(opts.sampler, opts.seed, context))
            runner = TrialRunner(model, space.measurement, load, devices, cluster, exclusive_hosts=opts.exclusive_hosts)
            stopper = Stopper(list(space.objectives), opts.timeout_s, opts.patience)
            ctx = LoopContext(study, space, info, runner, model, prices, space.constraints.to_constraints(),
                              load, cluster.hardware_key(), opts.remeasure, log, stopper)
            if not study.get_trials(deepcopy=False):
                if opts.warm_start:
                    warm_start(study, opts.warm_start, opts.storage, space, info, log)
                if opts.sampler != "default":  # the default sampler picks its own start
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


def warm_start(study: optuna.Study, source: str, storage: str | None, space: SearchSpace, info, log) -> int:
    """Enqueue the feasible Pareto configurations of an earlier study (new model version, new
    prices, new cluster): measured again here, first. Returns how many were enqueued."""
    from tuner.storage import load_study

    earlier = study_record(load_study(source, storage))["trials"]
    grid = set(space.enumerate(info))
    picked = []
    for r in earlier:
        if r["pareto"]:
            config = TrialConfig.from_dict({**r["config"], "device": r.get("device")})
            if config in grid and config not in picked:
                picked.append(config)
    for config in picked:
        study.enqueue_trial(space.params_for(config), skip_if_exists=True)
    log(f"warm start: {len(picked)} Pareto configuration(s) of study {source!r} enqueued first"
        f"{'' if picked else ' (none fits this search space and cluster)'}")
    return len(picked)


def check_prices(space: SearchSpace, platforms: list[str], prices: PriceTable) -> None:
    for pl in platforms:
        devices = getattr(getattr(space.platforms, pl), "device", None)
        for dev in devices.choices if devices else [None]:
            prices.row(prices.key_for(TrialConfig(pl, 1, "int8", 1, 1, dev)))


def open_study(opts: TuneOptions, storage, model: PreparedModel, space: SearchSpace, prices: PriceTable,
               load: LoadSpec, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    name = opts.study or model_name(opts.model)
    objectives = list(space.objectives)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions_for(objectives),
                                sampler=sampler, load_if_exists=True)
    if study.metric_names and study.metric_names != objectives:
        raise TunerError(
            f"Study {name!r} optimises {study.metric_names}, but the search space asks for {objectives}. "
            "Use the same objectives to continue it, or pass --study NEW_NAME.")
    known = study.user_attrs.get("model")
    if known is None:
        study.set_metric_names(objectives)
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
