"""Shared fixtures. Tests use a private model cache so they never touch the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(os.environ.get("TUNER_TEST_CACHE_DIR") or tmp_path_factory.mktemp("tuner-cache"))
    os.environ["TUNER_CACHE_DIR"] = str(path)
    return path
