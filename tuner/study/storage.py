"""Optuna storage from a URL: SQLite by default, PostgreSQL (or any SQLAlchemy URL) for many machines."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna

from tuner.errors import TunerError

DEFAULT_STORAGE = "sqlite:///tuner.db"
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30  # a trial without a heartbeat for this long belongs to a dead driver
RETRY_S = float(os.environ.get("TUNER_STORAGE_RETRY_S", "60"))


def _is_connection_error(exc: BaseException | None) -> bool:
    """A lost database connection, also when Optuna wraps it (StorageInternalError from e)."""
    import sqlalchemy.exc as sa

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (sa.OperationalError, sa.InterfaceError)) or (
                isinstance(exc, sa.DBAPIError) and exc.connection_invalidated):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _retrying(method: Callable[..., Any], url: str) -> Callable[..., Any]:
    """Retry a storage call while the database is unreachable, for up to RETRY_S seconds."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        deadline, delay, told = time.monotonic() + RETRY_S, 0.5, False
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise TunerError(
                        f"The storage {url} has been unreachable for {RETRY_S:.0f} s ({type(exc).__name__}). "
                        "Completed trials are saved in it; rerun the same command once it is back to "
                        "continue (TUNER_STORAGE_RETRY_S sets how long to wait).", exit_code=1) from None
                if not told:
                    print(f"storage unreachable ({type(exc).__name__}); retrying for up to {RETRY_S:.0f} s...",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call


def check_url(url: str | None) -> None:
    if url is not None and "://" not in url:
        raise TunerError(
            f"Got {url!r} for --storage. A storage is a database URL, e.g. "
            "sqlite:///tuner.db or postgresql://user:pass@host/db.")


def open_storage(url: str | None, create: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so trials of a killed driver can be detected and failed.

    With `create=False` (commands that only read) a SQLite file that does not exist is an
    error, instead of a new empty database left behind.
    """
    check_url(url)
    url = url or DEFAULT_STORAGE
    if not create and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = url[len("sqlite:///"):]
        if not os.path.exists(path):
            raise TunerError(
                f"No storage at {url}: the file {os.path.abspath(path)} does not exist. Run tuner tune first "
                "(in this directory), or pass the --storage that tune used.")
    try:
        storage = optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs / unreachable servers
        raise TunerError(
            f"Cannot open storage {url!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "Check the URL, that the database server is running and reachable, and that its "
            "driver is installed (PostgreSQL: pip install 'psycopg[binary]')."
        ) from None
    # Public methods, plus the private ones Optuna's study-level cache calls on its backend.
    private = ("_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids", "_get_trials", "_set_trial_param")
    for name in [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")] + list(private):
        if callable(getattr(storage, name, None)):
            setattr(storage, name, _retrying(getattr(storage, name), url))
    return storage


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The search studies in `storage` (not the companions the dashboard lists beside them:
    `tuner.study.companions`)."""
    from tuner.study.companions import is_companion

    return [s.study_name for s in optuna.get_all_study_summaries(storage) if not is_companion(s.user_attrs)]


def load_study(name: str, url: str | None) -> optuna.Study:
    storage = open_storage(url, create=False)
    names = study_names(storage)
    if name not in names:
        raise TunerError(
            f"No study named {name!r} in {url or DEFAULT_STORAGE}. Studies there: "
            f"{names or 'none'}. Pass --study with one of them (and the same --storage as tune)."
        )
    return optuna.load_study(study_name=name, storage=storage)
