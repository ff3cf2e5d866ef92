"""Other work on this machine, for tests and experiments: a spinning process that is not tuner's
(it is started detached, so it is no descendant of the caller, as a user's other program is not)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def busy_process(core: int | None = None, settle_s: float = 0.3) -> Iterator[int]:
    """`python -c "while True: pass"`, pinned to `core` if given; yields its pid, kills it after."""
    pin = f"import os; os.sched_setaffinity(0, {{{core}}})\n" if core is not None else ""
    code = f"{pin}while True: pass"
    out = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{code}" >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip())
    time.sleep(settle_s)
    try:
        yield pid
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
