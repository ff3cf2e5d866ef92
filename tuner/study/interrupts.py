"""Ctrl-C / SIGTERM that cannot be lost.

Python raises KeyboardInterrupt in whatever the main thread runs when the signal arrives; if
that is a finalizer (a Ray ObjectRef's ``__del__``, say) the exception is printed as "ignored"
and the run goes on. The handler therefore also sets `INTERRUPTED`, which the study loop checks
at least once a second.
"""

from __future__ import annotations

import signal
import threading

INTERRUPTED = threading.Event()


def _handler(signum: int, frame: object) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM both end a run the way Ctrl-C does (trials cancelled and recorded)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived whose exception was swallowed."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
