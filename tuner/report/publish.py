"""Write a study's report and upload it as the study's Optuna artifacts, where `tuner dashboard`
lists it: the single-file page (what opens from the dashboard) and the PNG plots."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna

from tuner.report import ReportFiles, report_of_study, write_report
from tuner.report.standalone import write_standalone
from tuner.study.artifacts import artifact_dir, open_store, upload_report


@dataclass(frozen=True)
class Published:
    files: ReportFiles | None  # None: written to a temporary folder, gone once uploaded
    store: Path
    artifact_ids: list[str]


def publish_report(study: optuna.Study, storage_url: str | None, servable: frozenset[str],
                   out_dir: Path | None = None, artifacts: Path | None = None) -> Published:
    """Write the report into `out_dir` (a temporary folder when None) and upload it."""
    store = open_store(storage_url, artifacts)
    report = report_of_study(study, servable)
    if out_dir is not None:
        files = write_report(report, out_dir)
        return Published(files, artifact_dir(storage_url, artifacts), _upload(study, store, files))
    with tempfile.TemporaryDirectory(prefix="tuner-report-") as tmp:
        ids = _upload(study, store, write_report(report, Path(tmp)))
    return Published(None, artifact_dir(storage_url, artifacts), ids)


def _upload(study: optuna.Study, store, files: ReportFiles) -> list[str]:
    page = write_standalone(files.html, files.plotly_js, files.pngs)
    return upload_report(study, store, [page, *files.pngs.values()])
