"""Interference during measuring windows (`tuner.evaluators.interference`, `windows.run_protocol`),
read from the real /proc around a real ONNX Runtime bench, with a real busy process that is not
tuner's (started detached, so it is no descendant of this process) pinned beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import tiny_cnn
from tuner.evaluators.base import thread_broadcast
from tuner.evaluators.cpu import ReplicaBench
from tuner.evaluators.interference import Probe, core_busy_ticks, others_share, pressure_total_us, summary
from tuner.evaluators.windows import run_protocol
from tuner.models.spec import InputSpec
from tuner.spec.measurement import LoadSpec, MeasurementSettings
from tuner.testing.busy import busy_process

CORES = sorted(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="pins the bench and a busy process to distinct cores")
SETTINGS = MeasurementSettings(warmup_s=0.05, window_s=0.3, min_windows=2, max_windows=4, target_requests=20,
                               max_measuring_s=4.0, disturbed_windows_max=2)


def test_counters_parse_as_this_kernel_writes_them() -> None:
    ticks = core_busy_ticks(Path("/proc/stat").read_text())
    assert sorted(ticks) == sorted(range(len(ticks))) and all(v > 0 for v in ticks.values())
    assert pressure_total_us("some avg10=0.31 avg60=2.53 avg300=1.11 total=4385363\nfull avg10=0.00 total=0") == 4385363
    assert others_share(busy_ticks=150, ours_cpu_s=0.5, wall_s=1.0, cores=2, ticks_per_s=100) == 0.5
    assert others_share(busy_ticks=10, ours_cpu_s=0.5, wall_s=1.0, cores=1, ticks_per_s=100) == 0.0  # ours is more
    assert summary([None], [], 0.1)["probed"] is False


@needs_two_cores
def test_a_foreign_process_on_the_trials_core_is_seen_and_ours_is_not() -> None:
    probe = Probe((CORES[0],))
    with busy_process(CORES[0]):
        before = probe.begin()
        time.sleep(1.0)
        seen, _ = probe.end(before)
    assert seen is not None and seen.others_share > 0.6, seen  # the hog took the core
    mine = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{CORES[0]}}})\nwhile True: pass"])
    try:
        time.sleep(0.3)
        before = probe.begin()
        time.sleep(1.0)
        seen, _ = probe.end(before)
    finally:
        mine.kill()
        mine.wait()
    assert seen is not None and seen.others_share < 0.3, seen  # a process this one started is tuner's own


def _measure_on(core: int) -> dict:
    """A bench pinned to `core`, measured in a thread of this process (its pinning is undone after:
    a bench pins the thread that makes it, and later tests must see every core)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        def measure() -> dict:
            mask = os.sched_getaffinity(0)
            try:
                bench = ReplicaBench(1, [core])
                bench.prepare("m", tiny_cnn(8, 16), (InputSpec("x", (3, 16, 16), "float32"),), 4)
                return run_protocol(lambda method, args: [getattr(bench, method)(*args)], SETTINGS,
                                    LoadSpec()).details["interference"]
            finally:
                os.sched_setaffinity(0, mask)

        return pool.submit(measure).result()


@needs_two_cores
def test_disturbed_windows_are_left_out_re_measured_and_the_trial_flagged() -> None:
    with busy_process(CORES[0]):
        seen = _measure_on(CORES[0])
    assert seen["probed"] and seen["cores"] == [CORES[0]]
    assert seen["windows_left_out"] == SETTINGS.disturbed_windows_max  # bounded: then they are kept
    assert all(s > SETTINGS.interference_share_max for s in seen["left_out_others_share"])
    assert seen["disturbed"] is True and seen["others_share_max"] > SETTINGS.interference_share_max


@needs_two_cores
def test_a_busy_process_on_another_core_does_not_disturb_a_pinned_trial() -> None:
    with busy_process(CORES[1]):
        seen = _measure_on(CORES[0])
    assert seen["probed"] and seen["cores"] == [CORES[0]]
    assert seen["others_share_max"] < 0.5, seen  # the hog's core is not the trial's


def test_a_probe_can_be_declined() -> None:
    bench = ReplicaBench(1, None)
    bench.prepare("m", tiny_cnn(8, 16), (InputSpec("x", (3, 16, 16), "float32"),), 4)
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = run_protocol(thread_broadcast([bench], pool), SETTINGS, LoadSpec(), probe=False)
    assert result.details["interference"] == {"probed": False, "why": "not asked"}


def test_a_trials_record_says_when_it_was_disturbed_and_by_whom() -> None:
    from tuner.cli.table import machine_flag
    from tuner.config import TrialConfig
    from tuner.record import Interference, Remeasured, TrialRecord

    seen = {"probed": True, "disturbed": True, "share_max": 0.1, "others_share_max": 0.46, "windows_left_out": 4,
            "top_others": ["python (pid 9207): 0.91 cores"]}
    noise = Interference.from_dict(seen)
    assert noise is not None and noise.disturbed
    assert "DISTURBED" in noise.describe() and "46%" in noise.describe() and "python (pid 9207)" in noise.describe()
    assert Interference.from_dict({"probed": False, "why": "not asked"}) is None
    quiet = Interference.from_dict(seen | {"disturbed": False, "others_share_max": 0.02, "windows_left_out": 1})
    assert quiet is not None and quiet.describe().startswith("quiet: other processes took at most 2%")
    trial = TrialRecord(3, "COMPLETE", TrialConfig("cpu", 1, "fp32", 1, 1), None, interference=noise)
    assert trial.disturbed and machine_flag(trial) == "DISTURBED" and trial.to_json()["interference"]["disturbed"]
    finalist = TrialRecord(4, "COMPLETE", None, None, remeasured=Remeasured(4, {}, 0.05, None, disturbed_samples=1),
                           interference=noise)
    assert not finalist.disturbed  # one of four measurements: its median is not the disturbed one's
    assert machine_flag(finalist) == "DISTURBED 1/4"


def test_an_out_of_memory_kill_is_blamed_on_other_work_only_when_it_holds_more() -> None:
    from tuner.evaluators.interference import MemoryHeld, memory_held
    from tuner.runner.trial import out_of_memory

    assert MemoryHeld(ours_gib=1.0, others_gib=20.0, total_gib=23.5).others_to_blame()
    assert not MemoryHeld(ours_gib=20.0, others_gib=1.0, total_gib=23.5).others_to_blame()
    # a quiet machine's own processes (seen in a test run: 1.4 GiB against tuner's 1.2) are not a culprit
    assert not MemoryHeld(ours_gib=1.2, others_gib=1.4, total_gib=23.5).others_to_blame()
    # the failed allocation's size decides when it is known: larger than the machine less tuner's own
    # use, it is the configuration's however much the others hold; fitting only without them, theirs
    busy = MemoryHeld(ours_gib=1.0, others_gib=20.0, total_gib=23.5)
    assert not busy.others_to_blame(request_gib=64.0)
    assert busy.others_to_blame(request_gib=8.0)
    assert not busy.others_to_blame(request_gib=1.0)  # it fits beside them: not their memory it lacked
    before = memory_held()
    hog = subprocess.Popen([sys.executable, "-c", "import time; b = b'\\x01' * 1_500_000_000; time.sleep(60)"])
    try:
        time.sleep(3.0)
        held = memory_held()
        assert before is not None and held is not None
        # a process this one started is tuner's own (this VM reclaims idle pages: not all 1.4 GiB stay resident)
        assert held.ours_gib - before.ours_gib >= 0.4, (before, held)
    finally:
        hog.kill()
        hog.wait()
    failure = out_of_memory("OutOfMemoryError: Task was killed due to the node running low on memory.")
    assert failure.reason.startswith(("out of memory: ", "out of memory because of other work: "))
    assert failure.infeasible == (not failure.reason.startswith("out of memory because of other work"))


def test_an_allocation_larger_than_the_machine_is_the_configurations_own_failure() -> None:
    """However much other processes hold, a single request for 1 PiB (more than any machine here) fails
    because of the configuration: infeasible, and the failure names the size."""
    from tuner.runner.trial import out_of_memory

    failure = out_of_memory("RayTaskError(Fail): onnxruntime...Fail: [ONNXRuntimeError] : 1 : FAIL : ... "
                            f"Failed to allocate memory for requested buffer of size {2**50}")
    assert failure.infeasible
    assert failure.reason.startswith("out of memory: ") and "one allocation of 1,048,576.0 GiB" in failure.reason
