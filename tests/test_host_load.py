"""How busy the machine is before a study (`tuner.runner.host_load`), read from the real /proc
with a real busy process beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tuner.runner.host_load import busy_share, cpu_times, memory_gib, sample_host, wait_quiet


def test_proc_stat_and_meminfo_parse_as_this_kernel_writes_them() -> None:
    cpus, busy, total = cpu_times(Path("/proc/stat").read_text())
    assert cpus >= 1 and 0 < busy < total
    available, mem_total = memory_gib(Path("/proc/meminfo").read_text())
    assert 0 < available <= mem_total
    assert busy_share((cpus, 10, 100), (cpus, 60, 200)) == 0.5
    assert busy_share((cpus, 10, 100), (cpus, 10, 100)) == 0.0  # no time passed: nothing to say


def test_a_busy_process_beside_it_is_seen_and_waited_for() -> None:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        load = sample_host(1.5)
        assert load is not None
        assert load.busy_cores >= 0.7, load  # one core spinning
        assert load.busy and "cores busy with other work" in load.describe()
        said: list[str] = []
        waited = wait_quiet(1.0, said.append, seconds=0.5)
        assert waited is not None and waited.busy  # it did not settle: the last sample comes back busy
        assert said and said[0].startswith("waiting for a quiet machine:")
        assert load.to_dict()["busy"] is True and load.to_dict()["cpus"] == load.cpus
    finally:
        hog.kill()
        hog.wait()
