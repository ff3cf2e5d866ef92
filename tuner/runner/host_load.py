"""How busy this machine is before a study measures anything: the CPU time other processes use
(from /proc/stat, sampled while tuner itself sleeps) and the memory they leave available (from
/proc/meminfo). A study that starts on a busy machine says so, records it in its run, and
`tuner tune --wait-quiet S` waits up to S seconds for the machine to settle first.

This is the machine as a whole before the study starts. Interference during each measuring
window is not covered here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tuner.evaluators.interference import meminfo_kib

PROC_STAT = Path("/proc/stat")
PROC_MEMINFO = Path("/proc/meminfo")
BUSY_SHARE_MAX = 0.25  # of all cores: above it the machine is "busy" (one busy process on 2 cores is 0.5)


@dataclass(frozen=True)
class HostLoad:
    cpus: int
    busy_share: float  # of all cores' time over the sample, 0..1
    sample_s: float
    mem_available_gib: float
    mem_total_gib: float

    @property
    def busy_cores(self) -> float:
        return self.busy_share * self.cpus

    @property
    def busy(self) -> bool:
        return self.busy_share > BUSY_SHARE_MAX

    def describe(self) -> str:
        return (f"{self.busy_cores:.1f} of {self.cpus} cores busy with other work ({self.busy_share:.0%} over "
                f"{self.sample_s:.1f} s), {self.mem_available_gib:.1f} of {self.mem_total_gib:.1f} GiB memory available")

    def to_dict(self) -> dict:
        return {**asdict(self), "busy_cores": round(self.busy_cores, 3), "busy": self.busy}


def cpu_times(stat_text: str) -> tuple[int, int, int]:
    """(cpus, busy jiffies, total jiffies) from /proc/stat: busy is all but idle and iowait;
    guest time is already inside user and nice."""
    lines = stat_text.splitlines()
    fields = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    total = sum(fields)
    return cpus, total - fields[3] - fields[4], total


def busy_share(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    total = after[2] - before[2]
    return 0.0 if total <= 0 else max(0.0, min(1.0, (after[1] - before[1]) / total))


def memory_gib(meminfo_text: str) -> tuple[float, float]:
    """(available, total) GiB from /proc/meminfo."""
    kib = meminfo_kib(meminfo_text)
    return kib.get("MemAvailable", 0) / 2**20, kib.get("MemTotal", 0) / 2**20


def sample_host(seconds: float = 1.0) -> HostLoad | None:
    """The machine's load over `seconds` (this process sleeps meanwhile); None without /proc."""
    if not PROC_STAT.is_file():
        return None
    before = cpu_times(PROC_STAT.read_text())
    time.sleep(seconds)
    after = cpu_times(PROC_STAT.read_text())
    available, total = memory_gib(PROC_MEMINFO.read_text()) if PROC_MEMINFO.is_file() else (0.0, 0.0)
    return HostLoad(after[0], busy_share(before, after), seconds, available, total)


def wait_quiet(max_wait_s: float, log: Callable[[str], None], seconds: float = 1.0) -> HostLoad | None:
    """Sample until the machine is not busy, for at most `max_wait_s`; the last sample."""
    deadline = time.monotonic() + max_wait_s
    load = sample_host(seconds)
    while load is not None and load.busy and time.monotonic() < deadline:
        log(f"waiting for a quiet machine: {load.describe()}")
        load = sample_host(seconds)
    return load
