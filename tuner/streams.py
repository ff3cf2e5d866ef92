"""File-descriptor redirection: output that C++ libraries and Ray's threads write straight to fd 1
or 2, beyond the reach of Python's `sys.stdout` and `sys.stderr`, sent elsewhere for a block."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fd_redirected(fd: int, target_fd: int) -> Iterator[None]:
    """While the block runs, whatever is written to file descriptor `fd` goes to `target_fd`;
    Python's own stream on `fd` (stdout for 1, stderr for 2) is flushed before and after, so
    nothing written before the block lands after it."""
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    if stream is not None:
        stream.flush()
    saved = os.dup(fd)
    try:
        os.dup2(target_fd, fd)
        yield
    finally:
        if stream is not None:
            stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
