"""The ask -> run -> tell loop on the in-process runner (real ONNX Runtime sessions, a real SQLite
study, no Ray): the target, reuse of measured configurations, not-runnable configurations, the
failure cap, resume, two drivers on one study, interruption and early stopping."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.metrics import PerfResult, directions_for
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.prices import load_prices
from tuner.runner.base import TrialFailed
from tuner.runner.local import LocalRunner
from tuner.search.stopping import Stopper
from tuner.spec.load import load_space
from tuner.spec.measurement import LoadSpec, MeasurementSettings
from tuner.study import interrupts
from tuner.study.loop import LoopContext, LoopStats, run_trials
from tuner.study.storage import open_storage

from helpers import CPU_SPACE, tiny_cnn, write_space

QUICK = MeasurementSettings(warmup_s=0.01, window_s=0.02, min_windows=1, max_windows=1, target_requests=1,
                            max_measuring_s=1.0, min_requests_per_window=1)
CLUSTER = ClusterInfo(total_cpus=2, max_node_cpus=2)
ONE_CONFIG = CPU_SPACE.replace("choices: [fp32, fp16]", "choices: [fp32]").replace("high: 4, pow2", "high: 1, pow2") \
    .replace("replicas: {type: int, low: 1, high: 2}", "replicas: {type: int, low: 1, high: 1}")


@pytest.fixture
def model(tmp_path: Path) -> PreparedModel:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_cnn(channels=4, size=8))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    variants = {p: Variant(p, str(path), digest, 1.0) for p in ("fp32", "fp16")}
    return PreparedModel("tiny", str(path), (InputSpec("x", (3, 8, 8), "float32"),), "fidelity", "test", variants)


class Recording:
    """Wraps a runner: counts calls and concurrency, fails or blocks where a test says so."""

    def __init__(self, inner, fail=lambda c, n: None) -> None:
        self.inner, self.fail = inner, fail
        self.calls, self.running, self.most_running, self.aborted = 0, 0, 0, False
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def run(self, config: TrialConfig) -> PerfResult:
        with self._lock:
            self.calls += 1
            n = self.calls
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.release.wait(30)
            error = self.fail(config, n)
            if error is not None:
                raise error
            return self.inner.run(config)
        finally:
            with self._lock:
                self.running -= 1

    def shutdown(self) -> None:
        self.inner.shutdown()

    def abort(self) -> None:
        self.aborted = True
        self.release.set()


def context(tmp_path: Path, model: PreparedModel, runner, space_text: str = CPU_SPACE, seed: int = 0,
            stopper: Stopper | None = None, db: str = "loop.db") -> LoopContext:
    space = load_space(str(write_space(tmp_path, space_text)))
    storage = open_storage(f"sqlite:///{tmp_path / db}")
    study = optuna.create_study(study_name="loop", storage=storage, load_if_exists=True,
                                directions=directions_for(space.objectives),
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    return LoopContext(study, space, CLUSTER, runner, model, load_prices(), space.constraints.to_constraints(),
                       LoadSpec(), "test-cpu", log=lambda line: None, stopper=stopper)


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_runs_until_the_target_and_records_every_trial(tmp_path, model):
    ctx = context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()))
    stats = run_trials(ctx, target=4, parallel=1)
    assert states(ctx.study) == {"COMPLETE": 4}
    assert stats.measured + stats.reused == 4 and stats.failed == 0
    for t in ctx.study.trials:
        assert t.user_attrs["throughput_rps"] > 0 and t.user_attrs["estimated"] is False
        assert t.user_attrs["feasible"] is True and "constraint.accuracy" in t.user_attrs
        assert t.values[0] == t.user_attrs["throughput_rps"]


def test_a_repeated_configuration_is_reused_not_measured_again(tmp_path, model):
    runner = Recording(LocalRunner(model, QUICK, LoadSpec()))
    ctx = context(tmp_path, model, runner, ONE_CONFIG)
    stats = run_trials(ctx, target=3, parallel=1)
    assert (stats.measured, stats.reused, runner.calls) == (1, 2, 1)
    first, *rest = ctx.study.trials
    assert [t.user_attrs["reused_from"] for t in rest] == [first.number, first.number]
    assert all(t.values == first.values for t in rest)


def test_a_configuration_that_cannot_run_is_infeasible_and_never_retried(tmp_path, model):
    def no_two_replicas(config, n):
        return TrialFailed("2 replicas never fit here", infeasible=True) if config.replicas == 2 else None

    runner = Recording(LocalRunner(model, QUICK, LoadSpec()), no_two_replicas)
    ctx = context(tmp_path, model, runner, seed=3)
    stats = run_trials(ctx, target=10, parallel=1)
    assert states(ctx.study) == {"COMPLETE": 10}
    bad = [t for t in ctx.study.trials if t.user_attrs["config"]["replicas"] == 2]
    assert bad and stats.not_runnable == len({t.user_attrs["measure_key"] for t in bad})
    for t in bad:
        assert t.user_attrs["feasible"] is False and t.constraints["runnable"] == 1.0
        assert t.values == [0.0, float("inf"), float("inf")]
    not_reused = [t for t in bad if "reused_from" not in t.user_attrs]
    assert all(t.user_attrs["failure"] == "2 replicas never fit here" for t in not_reused)
    assert runner.calls == stats.measured + stats.not_runnable  # each configuration ran once at most


def test_failed_trials_do_not_count_toward_the_target(tmp_path, model):
    def first_two_fail(config, n):
        return TrialFailed(f"worker {n} died") if n <= 2 else None

    ctx = context(tmp_path, model, Recording(LocalRunner(model, QUICK, LoadSpec()), first_two_fail))
    stats = run_trials(ctx, target=3, parallel=1)
    assert states(ctx.study) == {"FAIL": 2, "COMPLETE": 3} and stats.failed == 2
    failed = [t for t in ctx.study.trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["failure"] for t in failed] == ["worker 1 died", "worker 2 died"]


def test_too_many_failures_stop_the_run_with_a_message(tmp_path, model):
    ctx = context(tmp_path, model, Recording(LocalRunner(model, QUICK, LoadSpec()),
                                             lambda c, n: RuntimeError("a bug in the evaluator")))
    with pytest.raises(TunerError, match="4 trials failed in this run"):
        run_trials(ctx, target=2, parallel=1)
    failed = [t for t in ctx.study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 4  # more than max(3, target) failures stop the run
    assert all(t.user_attrs["failure"] == "RuntimeError: a bug in the evaluator" for t in failed)


def test_a_rerun_continues_the_study_to_its_new_target(tmp_path, model):
    first = context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()))
    run_trials(first, target=2, parallel=1)
    again = context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()), seed=1)
    stats = run_trials(again, target=5, parallel=1)
    assert states(again.study) == {"COMPLETE": 5}
    assert stats.measured + stats.reused == 3


def test_two_drivers_on_one_study_make_exactly_the_target(tmp_path, model):
    drivers = [context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()), seed=s) for s in (0, 1)]
    errors: list[BaseException] = []

    def drive(ctx: LoopContext) -> None:
        try:
            run_trials(ctx, target=4, parallel=1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    counts = states(drivers[0].study)
    assert counts["COMPLETE"] == 4 and set(counts) <= {"COMPLETE", "PRUNED"}
    pruned = [t for t in drivers[0].study.trials if t.state == TrialState.PRUNED]
    assert all("another driver" in t.user_attrs["surplus"] for t in pruned)


def test_parallel_trials_run_at_once_and_reach_the_target(tmp_path, model):
    together = threading.Barrier(2, timeout=10)

    def first_two_meet(config, n):  # a trial is short: hold the first two until both are running
        if n <= 2:
            together.wait()

    runner = Recording(LocalRunner(model, QUICK, LoadSpec()), first_two_meet)
    ctx = context(tmp_path, model, runner, seed=2)
    stats = run_trials(ctx, target=4, parallel=2)
    assert states(ctx.study) == {"COMPLETE": 4} and stats.measured >= 2
    assert runner.most_running == 2


def test_an_interrupt_cancels_the_trial_in_flight_and_records_it(tmp_path, model):
    runner = Recording(LocalRunner(model, QUICK, LoadSpec()))
    runner.release.clear()  # the first trial blocks until aborted
    ctx = context(tmp_path, model, runner)
    threading.Timer(0.5, interrupts.INTERRUPTED.set).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trials(ctx, target=3, parallel=1)
    finally:
        interrupts.INTERRUPTED.clear()
    assert runner.aborted
    (trial,) = ctx.study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["failure"].startswith("cancelled")


def test_patience_stops_asking_when_the_front_stops_improving(tmp_path, model):
    ctx = context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()), ONE_CONFIG,
                  stopper=Stopper(["throughput_rps", "latency_p95_ms", "cost_usd_per_million"], patience=2))
    start = time.monotonic()
    stats: LoopStats = run_trials(ctx, target=20, parallel=1)
    assert stats.stopped is not None and "--patience 2" in stats.stopped
    assert states(ctx.study) == {"COMPLETE": 3} and (stats.measured, stats.reused) == (1, 2)
    assert time.monotonic() - start < 30


def test_a_trial_measured_beside_other_work_is_flagged_disturbed_in_record_note_and_stats(tmp_path, model):
    from optuna_dashboard._note import get_note_from_system_attrs  # the note as the dashboard reads it

    from tuner.record import Interference
    from tuner.study.readback import study_record
    from tuner.testing.busy import busy_process

    settings = MeasurementSettings(warmup_s=0.01, window_s=0.2, min_windows=1, max_windows=2, target_requests=1,
                                   max_measuring_s=2.0, min_requests_per_window=1, disturbed_windows_max=1)
    ctx = context(tmp_path, model, LocalRunner(model, settings, LoadSpec()), space_text=ONE_CONFIG)
    with busy_process(), busy_process():  # both cores: whatever the trial's cores, others hold them
        stats = run_trials(ctx, 1, 1)
    trial = study_record(ctx.study).trials[0]
    assert trial.interference is not None and trial.disturbed, trial.interference
    assert trial.interference.windows_left_out == 1 and trial.interference.others_share_max > 0.1
    assert stats.disturbed == [0]
    frozen = ctx.study.get_trials(deepcopy=False)[0]
    assert frozen.user_attrs["interference"].startswith("DISTURBED")
    note = get_note_from_system_attrs(ctx.study._storage.get_study_system_attrs(ctx.study._study_id),
                                      frozen._trial_id)["body"]  # kept on the study
    assert "DISTURBED by other work" in note.splitlines()[0]
    assert Interference.from_dict(frozen.user_attrs["measurement"]["interference"]) == trial.interference


def test_the_grid_sampler_stops_the_run_once_it_has_tried_every_configuration(tmp_path, model):
    """Optuna's BruteForceSampler calls study.stop() after the last configuration is told, which
    raises outside study.optimize: it used to crash `tuner tune --sampler grid` at its last trial."""
    two = ONE_CONFIG.replace("high: 1, pow2", "high: 2, pow2")  # batch 1 and 2
    ctx = context(tmp_path, model, LocalRunner(model, QUICK, LoadSpec()), space_text=two)
    ctx.study.sampler = optuna.samplers.BruteForceSampler(seed=0)
    stats = run_trials(ctx, target=5, parallel=1)
    assert states(ctx.study) == {"COMPLETE": 2}
    assert sorted(t.user_attrs["config"]["batch_size"] for t in ctx.study.trials) == [1, 2]
    assert stats.stopped == "every configuration of the search space was tried"
