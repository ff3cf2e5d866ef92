"""`tuner tune`: prepare the model, open the study, run the trials, re-measure the finalists.

Rerunning the same command continues the study until it has `trials` COMPLETE trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import optuna

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.costmodels.fpga.devices import load_devices
from tuner.errors import TunerError
from tuner.evaluators.registry import LEVELS
from tuner.models.inputs import ModelOptions
from tuner.models.prepare import check_model_arg, model_name, prepare_model
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable, load_prices
from tuner.runner.cluster import RayCluster
from tuner.runner.host_load import sample_host, wait_quiet
from tuner.runner.memory_fit import trial_budget_bytes
from tuner.runner.trial import RayRunner
from tuner.search.context import SamplerContext
from tuner.search.samplers import SAMPLERS, make_sampler
from tuner.search.seeds import seed_params
from tuner.search.stopping import Stopper
from tuner.search.suggest import enumerate_configs
from tuner.spec.load import load_space
from tuner.spec.measurement import LoadSpec
from tuner.spec.space import SearchSpace
from tuner.study.companions import refresh_dashboard
from tuner.study.finalists import remeasure_finalists
from tuner.study.loop import LoopContext, complete_count, run_trials
from tuner.study.memory import PeakMemory
from tuner.study.model_fit import fpga_fits, gpu_precisions, memory_batches, model_batch, model_precisions
from tuner.study.open import open_study, record_run, warm_start
from tuner.study.storage import check_url, open_storage


@dataclass(frozen=True)
class TuneOptions:
    model: str = "digits-cnn"
    model_options: ModelOptions = field(default_factory=ModelOptions)
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
    measure: str | None = None  # "served" or "engine"; None: the search space's `measure`
    num_gpus: int | None = None  # GPUs the local cluster declares; None: what Ray detects
    gpu_backend: str = "ort"  # "ort", or "test-cpu" (tests only: ONNX Runtime on the CPU)
    wait_quiet_s: float | None = None  # wait up to this long for a quiet machine before starting


def search_view(info: ClusterInfo, level: str, stack_cpus: int, log: Callable[[str], None]) -> ClusterInfo:
    """The cluster as the search sees it: at the served level, `stack_cpus` cores are left to the
    HTTP proxy and the load generator (no layout of replicas may take them)."""
    if level != "served" or stack_cpus == 0:
        return info
    view = info.reserving(stack_cpus)
    if view.total_cpus < 1:
        raise TunerError(
            f"Served trials leave serving.stack_cpus = {stack_cpus} core(s) to the HTTP proxy and the load "
            f"generator, and this cluster has {info.total_cpus}. Set serving: {{stack_cpus: 0}} in the search "
            "space (replicas then share cores with the stack), or pass --measure engine.")
    log(f"served level: {stack_cpus} of {info.total_cpus} core(s) left to the HTTP proxy and the load generator; "
        f"replicas take at most {view.total_cpus}")
    return view


def sampler_context(space: SearchSpace, info, model: PreparedModel, prices: PriceTable, devices) -> SamplerContext:
    """What the default sampler knows before any trial: each variant's accuracy, and the cost
    model's prediction for every FPGA configuration (computed here; it takes a second)."""
    from tuner.evaluators.fpga import evaluate_fpga

    estimates = {}
    fpga = [c for c in enumerate_configs(space, info) if c.platform == "fpga"]
    if fpga and "int8" in model.variants:
        with open(model.variants["int8"].path, "rb") as f:
            data = f.read()
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
    data = space.load.to_dict()
    if mode is not None:
        data["mode"] = mode
    if target_rps is not None:
        data["target_rps"] = target_rps
    try:
        return LoadSpec(**data)
    except ValueError as exc:
        raise TunerError(f"Invalid load: {exc}. Server mode needs --target-rps R (requests per second).") from None


def tune(opts: TuneOptions, log=print) -> optuna.Study:
    """Run (or continue) a study; returns it once it has `opts.trials` COMPLETE trials."""
    if opts.trials < 1 or opts.parallel < 1:
        raise TunerError(f"Got --trials {opts.trials} --parallel {opts.parallel}. Both must be >= 1.")
    if opts.wait_quiet_s is not None and opts.wait_quiet_s < 0:
        raise TunerError(f"Got --wait-quiet {opts.wait_quiet_s}. It is the most seconds to wait; pass 0 or more.")
    if opts.sampler not in SAMPLERS:
        raise TunerError(f"Got {opts.sampler!r} for --sampler. Choose one of: {', '.join(SAMPLERS)}.")
    space = load_space(opts.space)
    level = opts.measure or space.measure
    if level not in LEVELS:
        raise TunerError(f"Got {level!r} for --measure. Use one of {', '.join(LEVELS)}.")
    load = resolve_load(space, opts.load_mode, opts.target_rps)
    prices = load_prices(space.prices)
    devices = load_devices()
    check_model_arg(opts.model, opts.model_options)  # bad input fails before anything slow starts
    check_url(opts.storage)
    host = wait_quiet(opts.wait_quiet_s, log) if opts.wait_quiet_s else sample_host()
    if host is not None and host.busy:
        log(f"note: this machine is busy before the study starts: {host.describe()}. Figures measured now are "
            "lower and noisier than on a quiet machine (tuner tune --wait-quiet S waits up to S s for it to settle).")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with PeakMemory() as memory:
        cluster = RayCluster(opts.ray_address, num_gpus=opts.num_gpus)
        runner = None
        try:
            log(f"{cluster.describe()} (up in {cluster.start_s:.1f} s)")
            gpu, gpu_note = cluster.probe_gpu(opts.gpu_backend) if space.platform("gpu") else (None, "")
            if gpu is not None:
                log(f"note: {gpu_note}")
                space = gpu_precisions(space, gpu, log)
            info = search_view(cluster.info({name: d.cores for name, d in devices.items()}, gpu, gpu_note), level,
                               space.serving.stack_cpus, log)
            prices = replace(prices, gpus=info.total_gpus, gpu_device=gpu.device if gpu else None)
            for note in space.platform_notes(info):
                log(f"note: {note}")
            platforms = space.available_platforms(info)
            if not platforms:
                raise TunerError("No platform of the search space can run on this cluster (see the notes above).")
            check_prices(space, platforms, prices)
            precisions = {p for pl in platforms for p in getattr(space.platforms, pl).precision.choices}
            model = prepare_model(opts.model, opts.model_options, precisions, log, space.constraints.accuracy_min_ratio)
            space = fpga_fits(model_batch(model_precisions(space, model, log), model, log), model, log)
            budget = trial_budget_bytes(space.constraints.trial_memory_gib_max, cluster.node_memory_bytes())
            space = memory_batches(space, model, budget, log)
            platforms = space.available_platforms(info)
            if not platforms:
                raise TunerError(f"No platform of the search space can run {model.name} (see the notes above).")
            storage = open_storage(opts.storage)
            context = sampler_context(space, info, model, prices, devices) if opts.sampler == "default" else None
            study = open_study(opts.study or model_name(opts.model), opts.storage, storage, model, space, prices,
                               load, make_sampler(opts.sampler, opts.seed, context))
            runner = RayRunner(model, space.measurement, load, devices, cluster, exclusive_hosts=opts.exclusive_hosts,
                               level=level, served=space.serving, gpu=gpu,
                               trial_memory_gib_max=space.constraints.trial_memory_gib_max)
            hardware = cluster.hardware_key() + (f" + {gpu.device_name} ({gpu.backend})" if gpu else "")
            stopper = Stopper(list(space.objectives), opts.timeout_s, opts.patience)
            ctx = LoopContext(study, space, info, runner, model, prices, space.constraints.to_constraints(),
                              load, hardware, opts.remeasure, log, stopper, level)
            if not cluster.started_here:
                log("note: on an existing cluster, served figures (the served level and the finalists) go through "
                    "the Serve mode its nodes were started with; tuner's own clusters, and promote --deploy, run "
                    "Serve's fast path. Start the nodes with RAY_SERVE_ENABLE_HA_PROXY=1 "
                    "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for figures that match it; each served trial records its "
                    "serve_path")
            if level == "served" and opts.parallel > 1:
                log("note: served trials take their whole node and run one at a time; --parallel applies to FPGA "
                    "estimates beside them")
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
                # Finalists are always re-measured served: their medians are what promote deploys.
                served = runner if level == "served" else RayRunner(
                    model, space.measurement, load, devices, cluster, level="served",
                    served=replace(space.serving, engine_ceiling=False), gpu=gpu,
                    trial_memory_gib_max=space.constraints.trial_memory_gib_max)
                try:
                    remeasure_finalists(ctx, opts.finalists, opts.finalist_repeats, served, "served")
                finally:
                    if served is not runner:
                        served.shutdown()
        finally:
            if runner is not None:
                runner.shutdown()
            cluster.shutdown()
    record_run(study, started, time.perf_counter() - t0, memory.peak_gib, opts.parallel, stats,
               host.to_dict() if host else None)
    study.set_user_attr("measure", level)
    try:  # the front as tuner reports it, and the companion studies; the study stands whatever happens here
        refresh_dashboard(study)
    except Exception as exc:  # noqa: BLE001 - a storage error here must not lose a finished run
        log(f"warning: the dashboard's view of the study was not refreshed ({type(exc).__name__}: {exc}); "
            "the next tune or promote refreshes it")
    log(f"run: {stats.measured} measured, {stats.reused} reused, {stats.not_runnable} not runnable, "
        f"{stats.failed} failed in {time.perf_counter() - t0:.0f} s; peak memory "
        f"{memory.peak_gib:.2f} GiB (PSS of tuner{' and its local Ray cluster' if opts.ray_address is None else ''})"
        + (f"; this machine before the study: {host.describe()}" if host else "")
        + (f"; {len(stats.disturbed)} of {stats.measured} measured trials DISTURBED by other work on their cores "
           f"(#{', #'.join(map(str, stats.disturbed))}; flagged in tuner show, the report and the dashboard)"
           if stats.disturbed else ""))
    return study


def check_prices(space: SearchSpace, platforms: list[str], prices: PriceTable) -> None:
    for pl in platforms:
        devices = getattr(getattr(space.platforms, pl), "device", None)
        for dev in devices.choices if devices else [None]:
            prices.row(prices.key_for(TrialConfig(pl, 1, "int8", 1, 1, dev)))
