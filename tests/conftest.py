"""Shared fixtures (plain helpers are in helpers.py). Tests use a private model cache so they
never touch the user's."""

from __future__ import annotations

import os
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
