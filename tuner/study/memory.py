"""Peak memory of a tuner run: the driver and every process under it (a local Ray cluster's
GCS, raylet and workers, and so the replicas), sampled in the background.

Memory is summed as PSS (proportional set size), which splits shared pages between the
processes sharing them, so the total does not count Ray's shared libraries once per worker.
With --ray-address the cluster's processes are not under the driver: only the driver counts.
"""

from __future__ import annotations

import threading

import psutil


def tree_pss_bytes(root: psutil.Process) -> int:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return total


class PeakMemory:
    """Samples the process tree every `interval_s` until stopped; `peak_bytes` is the maximum."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        self._root = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-memory")

    def _run(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_pss_bytes(self._root))
            self.samples += 1
            if self._stop.wait(self._interval_s):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30
