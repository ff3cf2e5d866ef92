"""Shared fixtures (plain helpers are in helpers.py). Tests use a private model cache so they
never touch the user's."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import pytest

from helpers import free_port, write_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(os.environ.get("TUNER_TEST_CACHE_DIR") or tmp_path_factory.mktemp("tuner-cache"))
    os.environ["TUNER_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


@pytest.fixture
def cpu_space(tmp_path: Path) -> Path:
    """A small CPU-only search space file (helpers.CPU_SPACE)."""
    return write_space(tmp_path)


# The test process ends without the interpreter's own teardown. It has started and stopped Ray
# (and Ray Serve) many times; each ray.shutdown leaves C++ threads of Ray's GCS client and of gRPC
# running (seen at the end of a full run: gcs_client_io_service, worker.io, grpc_global_timer,
# event_engine, 7 client.poll), and tearing the interpreter down under them can crash: CI run of
# 2026-12-07 printed "890 passed, 1 skipped" and then died with SIGSEGV (exit 139). Ray says
# restarting it in one process with threads about is unsafe (ray-project/ray#31145). So once the
# result is decided: stop Ray if a test left it running, run the atexit handlers (pytest's own
# clean-up among them), flush, and exit with pytest's exit status. Only this process: `tuner`
# starts Ray once per command, and the tests that run it check its exit code.
_EXIT_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(session.exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if not _EXIT_STATUS:
        return  # no session ran (--help, --collect-only errors): nothing to skip
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    atexit._run_exitfuncs()  # noqa: SLF001
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
