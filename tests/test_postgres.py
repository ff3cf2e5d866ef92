"""PostgreSQL storage, for real: two drivers on one study, and the database going away.

.ci/run installs PostgreSQL from the system packages, starts it on 127.0.0.1 and sets
TUNER_TEST_POSTGRES_URL (and the commands that stop and start it). Without them these tests
are skipped, and say so.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.integration

URL = os.environ.get("TUNER_TEST_POSTGRES_URL")
STOP = os.environ.get("TUNER_TEST_POSTGRES_STOP")
START = os.environ.get("TUNER_TEST_POSTGRES_START")
needs_postgres = pytest.mark.skipif(not URL, reason="TUNER_TEST_POSTGRES_URL is not set (.ci/run sets it)")

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, fp16, int8]}
    batch_size: {type: int, low: 1, high: 64, pow2: true}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measure: engine  # the study loop is under test here, not the serving stack
measurement: {warmup_s: 0.1, window_s: 0.5, min_windows: 2, max_windows: 2, target_requests: 100}
"""


def tune_cmd(study: str, trials: int) -> list[str]:
    return [sys.executable, "-m", "tuner", "tune", "--storage", URL, "--study", study, "--trials", str(trials),
            "--space", "space.yaml", "--finalists", "0", "--remeasure"]


@needs_postgres
def test_two_drivers_on_one_study_make_exactly_the_target(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    study = f"two-drivers-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen(tune_cmd(study, 8), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    trials = optuna.load_study(study_name=study, storage=URL).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 8                                     # exact: none lost, none extra
    measured = [t for t in complete if "reused_from" not in t.user_attrs]
    assert len({t.number for t in measured}) == len(measured)      # no trial measured twice
    assert all("measurement" in t.user_attrs for t in measured)
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert sum("[" in o and "measured" in o for o in outs) == 2   # both drivers measured trials


@needs_postgres
@pytest.mark.skipif(not (STOP and START), reason="TUNER_TEST_POSTGRES_STOP/START are not set (.ci/run sets them)")
def test_storage_outage_is_waited_out_and_nothing_is_lost(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    study = f"outage-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(tune_cmd(study, 6), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            done = [t for t in optuna.load_study(study_name=study, storage=URL).get_trials()
                    if t.state.name == "COMPLETE"]
            if len(done) >= 2:
                break
        except Exception:
            pass
        time.sleep(1)
    subprocess.run(shlex.split(STOP), check=True)
    time.sleep(8)                                    # the tuner meets an unreachable database
    subprocess.run(shlex.split(START), check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert "storage unreachable" in err              # it noticed, waited, and went on
    complete = [t for t in optuna.load_study(study_name=study, storage=URL).get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == 6
