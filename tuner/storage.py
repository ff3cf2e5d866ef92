"""Optuna storage from a URL: SQLite by default, PostgreSQL (or any SQLAlchemy URL) for many machines."""

from __future__ import annotations

import optuna

from tuner.errors import TunerError

DEFAULT_STORAGE = "sqlite:///tuner.db"
HEARTBEAT_INTERVAL_S = 20
GRACE_PERIOD_S = 90


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so trials of a killed driver can be detected and failed."""
    url = url or DEFAULT_STORAGE
    if "://" not in url:
        raise TunerError(
            f"Got {url!r} for --storage. A storage is a database URL, e.g. "
            "sqlite:///tuner.db or postgresql://user:pass@host/db."
        )
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs / unreachable servers
        raise TunerError(
            f"Cannot open storage {url!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "Check the URL, that the database server is running and reachable, and that its "
            "driver is installed (psycopg2 for PostgreSQL)."
        ) from None


def load_study(name: str, url: str | None) -> optuna.Study:
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise TunerError(
            f"No study named {name!r} in {url or DEFAULT_STORAGE}. Studies there: "
            f"{names or 'none'}. Pass --study with one of them (and the same --storage as tune)."
        )
    return optuna.load_study(study_name=name, storage=storage)
