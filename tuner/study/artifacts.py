"""The study's report as Optuna artifacts, in a store beside the study, so that optuna-dashboard
(`tuner dashboard`) lists it on the study's page and opens it.

Where the store is: for a SQLite storage ``sqlite:///DIR/NAME.db``, the folder
``DIR/NAME.db.artifacts``; for any other storage (PostgreSQL), ``./tuner-artifacts`` unless
``--artifacts DIR`` names one. Each upload replaces the study's earlier report (removed from the
store and unlisted as the dashboard itself removes an artifact), so the study's page lists one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from tuner.errors import TunerError
from tuner.study.storage import DEFAULT_STORAGE

REPORT_ATTR = "report_artifacts"  # study user attribute: the ids of the report's artifacts
META_PREFIX = "artifacts:"  # optuna.artifacts' study system attribute prefix (the dashboard unlists `null`)
DEFAULT_DIR = "tuner-artifacts"


def artifact_dir(storage_url: str | None, override: Path | None = None) -> Path:
    """The folder of the artifact store that belongs with `storage_url`."""
    if override is not None:
        return Path(override)
    url = storage_url or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):] + ".artifacts")
    return Path(DEFAULT_DIR)


def open_store(storage_url: str | None, override: Path | None = None, create: bool = True) -> FileSystemArtifactStore:
    """The store's folder (made when `create`), as Optuna's file-system artifact store."""
    path = artifact_dir(storage_url, override)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TunerError(f"Cannot create the artifact folder {str(path)!r} ({exc.strerror}). Pass a writable "
                             "folder with --artifacts DIR.") from None
    elif not path.is_dir():
        raise TunerError(f"Got {str(path)!r} for --artifacts: no such folder. Run tuner report (it creates it) or "
                         "pass the folder tuner report used.")
    return FileSystemArtifactStore(os.fspath(path))


def upload_report(study: optuna.Study, store: FileSystemArtifactStore, files: list[Path]) -> list[str]:
    """Upload `files` as the study's report, replacing the one uploaded before; returns their ids."""
    for old in study.user_attrs.get(REPORT_ATTR, []):
        with contextlib.suppress(ArtifactNotFound):  # a file removed by hand: unlist it all the same
            store.remove(old)
        study._storage.set_study_system_attr(study._study_id, META_PREFIX + old, json.dumps(None))
    ids = [upload_artifact(artifact_store=store, file_path=os.fspath(f), study_or_trial=study) for f in files]
    study.set_user_attr(REPORT_ATTR, ids)
    return ids
