"""`tuner check-machine` and tuner/runner/host_speed.py: the machine's own speed, its verdicts."""

from __future__ import annotations

import json
import os

import pytest

from tuner.runner.host_speed import CoreSpeed, HostSpeed, describe, measure

from helpers import tuner


def _core(rates: list[float], cpu_per_wall: float = 1.0, condition: str = "all cores", core: int = 0) -> CoreSpeed:
    return CoreSpeed(condition, core, 0.25, tuple(rates), cpu_per_wall)


def test_cv_per_block_averages_the_blocks_of_that_length() -> None:
    steady = _core([100.0] * 32)
    assert steady.cv_pct(0.25) == 0.0 and steady.cv_pct(4.0) == 0.0
    # 2 s at 100, 2 s at 50, repeated: every 4 s block averages 75, every 0.25 s block is 100 or 50
    flip = _core(([100.0] * 8 + [50.0] * 8) * 2)
    assert flip.cv_pct(4.0) == pytest.approx(0.0)
    assert flip.cv_pct(0.25) == pytest.approx(100 * 25 / 75)
    assert flip.slow_block_share == pytest.approx(0.5)
    assert flip.slowest_of_p90 == pytest.approx(0.5)


def test_verdicts_steady_unsteady_busy() -> None:
    steady = HostSpeed((_core([100.0] * 32, condition="alone"), _core([100.0] * 32, core=1)), 8.0, 0.0)
    slow_half = [100.0] * 16 + [60.0] * 16  # first 4 s block 100, second 60: CV 25% over 4 s
    unsteady = HostSpeed((_core(slow_half), _core(slow_half, core=1)), 8.0, 0.0)
    busy = HostSpeed((_core([100.0] * 32, cpu_per_wall=0.5), _core([100.0] * 32, core=1)), 8.0, 0.0)
    assert steady.steady and not steady.busy and describe(steady)[-1].startswith("STEADY")
    assert unsteady.median_cv_pct(4.0) == pytest.approx(25.0)
    assert not unsteady.steady and describe(unsteady)[-1].startswith("UNSTEADY")
    assert busy.busy and not busy.steady and describe(busy)[-1].startswith("BUSY")


def test_too_short_a_run_is_refused_before_measuring() -> None:
    with pytest.raises(ValueError, match="seconds >= 8"):
        measure(seconds=2)


def test_check_machine_times_every_core_and_prints_a_record(tmp_path) -> None:
    out = tuner(tmp_path, "check-machine", "--seconds", "8", "--step-s", "0.5", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    cores = len(os.sched_getaffinity(0))
    assert [c["condition"] for c in record["cores"]] == ["alone"] + ["all cores"] * cores
    assert all(c["blocks"] >= 14 for c in record["cores"])  # 8 s of 0.5 s blocks
    assert all(0 < c["cpu_s_per_wall_s"] <= 1.05 for c in record["cores"])
    assert record["steady"] == (not record["busy"] and record["median_cv_4s_pct"] <= 5.0)


def test_check_machine_names_a_bad_duration_and_exits_2(tmp_path) -> None:
    out = tuner(tmp_path, "check-machine", "--seconds", "3", timeout=60)
    assert out.returncode == 2
    assert "seconds=3" in out.stderr and "--seconds 15" in out.stderr
