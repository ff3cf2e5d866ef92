"""The driver: ask -> suggest -> run on Ray -> tell, until the study has the requested trials.

Only this process touches the Optuna study. Workers get a TrialConfig and return a
PerfResult; accuracy (measured once per precision variant) and cost (price table) are added
here. Rerunning the same command continues the study until it has `trials` COMPLETE trials.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import optuna
from optuna.trial import TrialState

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.fpga.devices import load_devices
from tuner.metrics import DIRECTIONS, OBJECTIVES, Metrics, is_feasible
from tuner.models.prepare import model_name, prepare_model
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable, load_prices
from tuner.records import study_record
from tuner.runner import RayCluster, TrialFailed, TrialRunner
from tuner.search_space import SearchSpace, load_space
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
    ray_address: str | None = None
    seed: int | None = None


def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE; it reads the constraints set with `trial.set_constraint`."""
    return optuna.samplers.TPESampler(
        multivariate=True, group=True, constant_liar=True, n_startup_trials=10, seed=seed
    )


def tune(opts: TuneOptions, log=print) -> optuna.Study:
    """Run (or continue) a study; returns it once it has `opts.trials` COMPLETE trials."""
    if opts.trials < 1:
        raise TunerError(f"Got {opts.trials} for --trials. It must be >= 1. Pass e.g. --trials 24.")
    space = load_space(opts.space)
    prices = load_prices(space.prices)
    devices = load_devices()
    storage = open_storage(opts.storage)  # fail on a bad URL before anything slow starts
    cluster = RayCluster(opts.ray_address)
    try:
        log(f"{cluster.describe()} (up in {cluster.start_s:.1f} s)")
        info = cluster.info({name: d.cores for name, d in devices.items()})
        for note in space.platform_notes(info):
            log(f"note: {note}")
        platforms = space.available_platforms(info)
        if not platforms:
            raise TunerError("No platform of the search space can run on this cluster (see the notes above).")
        _check_prices(space, platforms, prices)
        precisions = {p for pl in platforms for p in getattr(space.platforms, pl).precision.choices}
        model = prepare_model(opts.model, opts.input_shapes, precisions, log)
        study = _open_study(opts, storage, model, space, prices)
        runner = TrialRunner(model, space.measurement, devices, info, pin_cores=cluster.started_here)
        _loop(study, opts, space, info, runner, model, prices, log)
        return study
    finally:
        cluster.shutdown()


def _check_prices(space: SearchSpace, platforms: list[str], prices: PriceTable) -> None:
    for pl in platforms:
        devices = getattr(getattr(space.platforms, pl), "device", None)
        for dev in devices.choices if devices else [None]:
            prices.row(prices.key_for(TrialConfig(pl, 1, "int8", 1, 1, dev)))


def _open_study(opts: TuneOptions, storage, model: PreparedModel, space: SearchSpace, prices: PriceTable) -> optuna.Study:
    name = opts.study or model_name(opts.model)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=list(DIRECTIONS),
        sampler=make_sampler(opts.seed),
        load_if_exists=True,
    )
    known = study.user_attrs.get("model")
    if known is None:
        study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("model", model.to_dict())
        study.set_user_attr("fp32_accuracy", model.fp32_accuracy)
        study.set_user_attr("accuracy_metric", model.accuracy_metric)
        study.set_user_attr("search_space", space.model_dump(mode="json", exclude_none=True))
        study.set_user_attr("prices", prices.to_dict())
    else:
        old = {k: v["sha256"] for k, v in known["variants"].items()}
        new = {k: v.sha256 for k, v in model.variants.items()}
        if any(old.get(k) != new[k] for k in old if k in new):
            raise TunerError(
                f"Study {name!r} in {opts.storage or DEFAULT_STORAGE} was measured on a different "
                f"build of model {model.name!r} (its ONNX files differ). Its trials would not "
                "be comparable: pass --study NEW_NAME to start a new study."
            )
        if set(new) - set(old):
            merged = dict(known)
            merged["variants"] = {**known["variants"], **{k: v for k, v in model.to_dict()["variants"].items() if k not in old}}
            study.set_user_attr("model", merged)
    optuna.storages.fail_stale_trials(study)  # trials a killed driver left RUNNING
    return study


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record heartbeats while a trial runs (ask/tell does not), so a killed driver's
    RUNNING trials become stale and are failed by the next run."""
    storage = study._storage
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval() or 60):
            storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _loop(study, opts, space, info, runner, model, prices, log) -> None:
    constraints = space.constraints.to_constraints()
    done = _complete(study)
    if done == 0 and not study.get_trials(deepcopy=False):
        for params in seed_params(space, info):
            study.enqueue_trial(params, skip_if_exists=True)
    if done >= opts.trials:
        log(f"study {study.study_name!r} already has {done} complete trials (>= {opts.trials}); nothing to do")
    else:
        log(f"study {study.study_name!r}: {done} complete trials, running until {opts.trials}")
    failures = 0
    while done < opts.trials:
        trial = study.ask()
        config = space.suggest(trial, info)
        trial.set_user_attr("config", config.to_dict())
        t0 = time.perf_counter()
        try:
            with _heartbeat(study, trial):
                perf = runner.run(config)
        except TrialFailed as exc:
            trial.set_user_attr("failure", exc.reason)
            study.tell(trial, state=TrialState.FAIL)
            failures += 1
            log(f"[{done:>3}/{opts.trials}] #{trial.number} {config.label()}  FAILED: {exc.reason}")
            if failures > max(3, opts.trials):
                raise TunerError(f"{failures} trials failed in this run; stopping. See the failures above.")
            continue
        except KeyboardInterrupt:
            trial.set_user_attr("failure", "interrupted by the user")
            study.tell(trial, state=TrialState.FAIL)
            raise
        variant = model.variants[config.precision]
        metrics = Metrics(
            throughput_rps=perf.throughput_rps,
            latency_p50_ms=perf.latency_p50_ms,
            latency_p95_ms=perf.latency_p95_ms,
            latency_p99_ms=perf.latency_p99_ms,
            accuracy=variant.accuracy,
            cost_usd_per_million=prices.cost_usd_per_million(config, perf.throughput_rps),
            estimated=perf.estimated,
        )
        values = constraints.values(metrics, model.fp32_accuracy)
        for key, value in values.items():
            trial.set_constraint(key, value)
            trial.set_user_attr(f"constraint.{key}", value)
        for key, value in metrics.to_dict().items():
            trial.set_user_attr(key, value)
        feasible = is_feasible(values)
        trial.set_user_attr("feasible", feasible)
        trial.set_user_attr("artifact", variant.path)
        row = prices.row(prices.key_for(config))
        trial.set_user_attr("price", {"key": prices.key_for(config), "usd_per_hour": prices.usd_per_hour(config), "source": row.source})
        trial.set_user_attr("measurement", perf.details)
        study.tell(trial, metrics.objective_values())
        done += 1
        tag = "ESTIMATED" if perf.estimated else "measured"
        log(
            f"[{done:>3}/{opts.trials}] #{trial.number} {config.label():<28} "
            f"{metrics.throughput_rps:>11,.0f} inf/s  p95 {metrics.latency_p95_ms:8.3f} ms  "
            f"acc {metrics.accuracy:.4f}  ${metrics.cost_usd_per_million:.5f}/M  "
            f"{'feasible' if feasible else 'INFEASIBLE'}  {tag}  ({time.perf_counter() - t0:.1f} s)"
        )
    front = [r for r in study_record(study)["trials"] if r["pareto"]]
    log(f"\nFeasible Pareto front of {study.study_name!r} ({len(front)} of {_complete(study)} complete trials;"
        " ESTIMATED rows come from the FPGA cost model, not a measurement):")
    log(format_table(sorted(front, key=lambda r: -r["metrics"]["throughput_rps"])) if front else "(empty: no feasible trial yet)")
