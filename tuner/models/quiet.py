"""Keep ONNX Runtime's and the quantizer's warnings off the terminal: into a log file.

ONNX Runtime's C++ logger writes to the process's stderr (file descriptor 2) and the
quantizer logs through Python's `logging`, so both are sent to the file while building a
model's variants; what tuner itself prints is untouched (it goes to stdout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuner.streams import fd_redirected


@contextmanager
def warnings_to(path: Path) -> Iterator[Path]:
    """Send fd 2 and Python logging to `path` (appended) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        with open(path, "ab") as f, fd_redirected(2, f.fileno()):
            root.handlers = [handler]
            root.setLevel(logging.INFO)
            yield path
    finally:
        handler.close()
        root.handlers, root.level = saved_handlers, saved_level


def line_count(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
