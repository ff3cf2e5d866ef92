"""The ask -> run -> tell loop, with up to `parallel` trials in flight.

Only this thread touches the study; trials run in worker threads that call the runner (the Ray
runner, or `LocalRunner` in this process: see `tuner.runner.base.Runner`). A new trial
is asked whenever one finishes. A configuration already measured in the study (same variant,
load and hardware) is not measured again: its measurement is copied, marked `reused_from`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, cast

import optuna
from optuna.trial import TrialState

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.metrics import Constraints, Metrics
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable
from tuner.record import Interference
from tuner.runner.base import Runner, TrialFailed
from tuner.search.stopping import Stopper
from tuner.search.suggest import suggest
from tuner.spec.measurement import LoadSpec
from tuner.spec.space import SearchSpace
from tuner.study import interrupts
from tuner.study.outcome import copy_measurement, make_outcome, measure_key, record, record_not_runnable


@dataclass
class LoopContext:
    study: optuna.Study
    space: SearchSpace
    cluster: ClusterInfo
    runner: Runner
    model: PreparedModel
    prices: PriceTable
    constraints: Constraints
    load: LoadSpec
    hardware: str
    remeasure: bool = False
    log: Callable[[str], None] = print
    stopper: Stopper | None = None
    level: str = "engine"  # what the runner measures at: "served" or "engine" (part of a measurement's key)


@dataclass
class LoopStats:
    measured: int = 0
    reused: int = 0
    not_runnable: int = 0
    failed: int = 0
    measured_keys: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    disturbed: list[int] = field(default_factory=list)  # trials measured while other work took their cores


class Heartbeat:
    """Record heartbeats while a trial runs (ask/tell does not), so a killed driver's RUNNING
    trials become stale and the next run fails and replaces them."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        # Optuna's heartbeat API is on the RDB storage (and its cache), not on BaseStorage.
        self._storage = cast(Any, study._storage)
        self._id = trial._trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._storage.record_heartbeat(self._id)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._storage.get_heartbeat_interval() or 60):
            self._storage.record_heartbeat(self._id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def complete_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _known_measurements(study: optuna.Study) -> dict[str, int]:
    return {t.user_attrs["measure_key"]: t.number
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "measure_key" in t.user_attrs and "reused_from" not in t.user_attrs}


def _line(done: int, target: int, number: int, config: TrialConfig, text: str) -> str:
    return f"[{done:>3}/{target}] #{number:<3} {config.label():<30} {text}"


def _open_slots(study: optuna.Study, target: int) -> int:
    """Trials still to start, counting every driver's: COMPLETE and RUNNING trials in storage."""
    optuna.storages.fail_stale_trials(study)  # a dead driver's RUNNING trials stop holding slots
    return target - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)))


def _surplus(study: optuna.Study, trial: optuna.Trial, target: int) -> bool:
    """Whether `target` trials numbered before this one are already done or running.

    Several drivers (machines sharing a PostgreSQL study) may ask at once; deciding by trial
    number makes exactly `target` of them go ahead, whoever asked first.
    """
    ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
             if t.number < trial.number]
    return len(ahead) >= target


def run_trials(ctx: LoopContext, target: int, parallel: int) -> LoopStats:
    """Run trials until the study has `target` COMPLETE trials (from this and other drivers)."""
    study, stats = ctx.study, LoopStats()
    in_flight: dict[Future, tuple[optuna.Trial, TrialConfig, str, float, Heartbeat]] = {}
    waiting: list[tuple[optuna.Trial, TrialConfig, str]] = []  # duplicates of in-flight trials
    executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="trial")
    try:
        while True:
            stats.measured_keys = _known_measurements(study)  # other drivers measure too
            while len(in_flight) + len(waiting) < parallel and _open_slots(study, target) > 0 and not stats.stopped:
                stop = ctx.stopper.reason() if ctx.stopper else None
                if stop:
                    if stats.stopped is None:
                        ctx.log(f"stopping early: {stop}")
                    stats.stopped = stop
                    break
                trial = study.ask()
                if _surplus(study, trial, target):
                    trial.set_user_attr("surplus", "another driver took the last trial of the target")
                    study.tell(trial, state=TrialState.PRUNED)
                    break
                done = complete_count(study)
                config = suggest(ctx.space, trial, ctx.cluster)
                trial.set_user_attr("config", config.to_dict())
                key = measure_key(config, ctx.model, ctx.load, ctx.hardware, ctx.level)
                if not ctx.remeasure and key in stats.measured_keys:
                    _reuse(ctx, trial, config, stats.measured_keys[key], done, target, stats)
                elif not ctx.remeasure and key in {v[2] for v in in_flight.values()}:
                    waiting.append((trial, config, key))
                else:
                    fut = executor.submit(ctx.runner.run, config)
                    in_flight[fut] = (trial, config, key, time.perf_counter(), Heartbeat(study, trial))
            if not in_flight and waiting:  # the original failed: measure the duplicate itself
                trial, config, key = waiting.pop(0)
                fut = executor.submit(ctx.runner.run, config)
                in_flight[fut] = (trial, config, key, time.perf_counter(), Heartbeat(study, trial))
            if not in_flight:
                if stats.stopped or complete_count(study) >= target:
                    break
                if _open_slots(study, target) <= 0:  # other drivers' trials are running: wait for them
                    time.sleep(2.0)
                continue
            finished, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            interrupts.check()
            for fut in finished:
                trial, config, key, t0, beat = in_flight.pop(fut)
                beat.stop()
                _finish(ctx, fut, trial, config, key, time.perf_counter() - t0, complete_count(study), target, stats)
                if stats.failed > max(3, target):
                    raise TunerError(f"{stats.failed} trials failed in this run; stopping. See the failures above.")
            for item in [w for w in waiting if w[2] in stats.measured_keys]:
                waiting.remove(item)
                _reuse(ctx, item[0], item[1], stats.measured_keys[item[2]], complete_count(study), target, stats)
    except BaseException:
        for trial, *_rest, beat in list(in_flight.values()):
            beat.stop()
            trial.set_user_attr("failure", "cancelled: the tuner was interrupted while it ran")
            study.tell(trial, state=TrialState.FAIL)
        for trial, _c, _k in waiting:
            study.tell(trial, state=TrialState.FAIL)
        executor.shutdown(wait=False, cancel_futures=True)
        # End the running trials before Ray shuts down: a thread still inside ray.get while
        # the driver disconnects can abort the process (SIGABRT) instead of exiting cleanly.
        if in_flight:
            with contextlib.suppress(Exception):  # best effort; the cluster may be gone already
                ctx.runner.abort()
            wait(list(in_flight), timeout=30)
        raise
    executor.shutdown(wait=True)
    return stats


#: What Optuna raises when a sampler calls `study.stop()` outside `study.optimize` (its
#: BruteForceSampler does once every configuration of the grid has been told).
_STOP_OUTSIDE_OPTIMIZE = "`Study.stop` is supposed to be invoked inside"


def _tell(ctx: LoopContext, stats: LoopStats, trial, values=None, state=None) -> None:
    """`study.tell`; a sampler that asks the study to stop (the grid sampler, every configuration
    tried) stops this run instead of crashing it. Optuna stores the trial before that request."""
    try:
        ctx.study.tell(trial, values, state=state)
    except RuntimeError as exc:
        if _STOP_OUTSIDE_OPTIMIZE not in str(exc):
            raise
        if stats.stopped is None:
            ctx.log("stopping: the sampler has tried every configuration of the search space")
        stats.stopped = "every configuration of the search space was tried"


def _reuse(ctx: LoopContext, trial, config, source_number: int, done: int, target: int, stats: LoopStats) -> int:
    source = ctx.study.get_trials(deepcopy=False)[source_number]
    _tell(ctx, stats, trial, copy_measurement(trial, source))
    stats.reused += 1
    if ctx.stopper:
        ctx.stopper.observe(None, False)  # a repeat adds nothing to the front
    ctx.log(_line(done + 1, target, trial.number, config, f"already measured in trial #{source_number}: reused, not re-measured"))
    return 1


def _finish(ctx: LoopContext, fut: Future, trial, config, key: str, secs: float, done: int, target: int,
            stats: LoopStats) -> int:
    try:
        perf = fut.result()
    except TrialFailed as exc:
        if exc.infeasible:
            _tell(ctx, stats, trial, record_not_runnable(trial, exc.reason, key, ctx.space.objectives))
            if ctx.stopper:
                ctx.stopper.observe(None, False)
            stats.not_runnable += 1
            stats.measured_keys[key] = trial.number
            ctx.log(_line(done + 1, target, trial.number, config, f"INFEASIBLE (cannot run: {exc.reason})"))
            return 1
        trial.set_user_attr("failure", exc.reason)
        _tell(ctx, stats, trial, state=TrialState.FAIL)
        stats.failed += 1
        ctx.log(_line(done, target, trial.number, config, f"FAILED: {exc.reason}"))
        return 0
    except Exception as exc:  # a bug or an unexpected runtime error: this trial fails, the study goes on
        trial.set_user_attr("failure", f"{type(exc).__name__}: {exc}")
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        _tell(ctx, stats, trial, state=TrialState.FAIL)
        stats.failed += 1
        ctx.log(_line(done, target, trial.number, config, f"FAILED: {type(exc).__name__}: {exc}"))
        return 0
    outcome = make_outcome(config, perf, ctx.model, ctx.prices, ctx.constraints)
    _tell(ctx, stats, trial, record(trial, outcome, key, ctx.space.objectives))
    if ctx.stopper:
        ctx.stopper.observe(outcome.metrics.to_dict(), outcome.feasible)
    stats.measured += 1
    stats.measured_keys[key] = trial.number
    noise = Interference.from_dict(perf.details.get("interference"))
    if noise is not None and noise.disturbed:
        stats.disturbed.append(trial.number)
    m = outcome.metrics
    ctx.log(_line(done + 1, target, trial.number, config,
                  f"{m.throughput_rps:>11,.0f} inf/s  p95 {m.latency_p95_ms:9.3f} ms  acc {m.accuracy:.4f}  "
                  f"${m.cost_usd_per_million:.5f}/M  {'feasible' if outcome.feasible else 'INFEASIBLE'}  "
                  f"{_figures(m)}{_backend_note(perf.details)}  ({secs:.1f} s)"
                  + (f"  DISTURBED: other work took up to {noise.others_share_max:.0%} of its cores"
                     if noise is not None and noise.disturbed else "")))
    return 1


def _figures(m: Metrics) -> str:
    """"measured", or "ESTIMATED x1.15/x1.46 (typical/worst)" ("... uncalibrated (typical/worst)"): an
    estimate with its expected error."""
    if not m.estimated:
        return "measured"
    band = m.error_band
    if band is None:
        return "ESTIMATED"
    return f"ESTIMATED {band.short()} (typical/worst)"


def _backend_note(details: dict) -> str:
    """ " on the TEST backend" for a gpu trial of the test backend (its figures are CPU figures)."""
    gpu = details.get("gpu")
    return " on the TEST backend (CPU)" if isinstance(gpu, dict) and gpu.get("test_backend") else ""
