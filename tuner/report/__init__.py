"""`tuner report`: a study as an HTML page a person can read, with PNG plots for offline readers.

build (study data -> typed `Report`, pure) -> plots (plotly figure, matplotlib PNGs) -> html (page).
The output folder is self-contained: index.html, plotly.min.js (no CDN), front_*.png.
`publish` uploads it as the study's Optuna artifacts (`standalone`: the page as one file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import optuna

from tuner.errors import TunerError
from tuner.report.build import Report, build_report
from tuner.study.readback import study_record

__all__ = ["Report", "ReportFiles", "build_report", "report_of_study", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    plotly_js: Path
    pngs: dict[str, Path]


def report_of_study(study: optuna.Study, servable: frozenset[str] = frozenset({"cpu", "gpu"})) -> Report:
    """Build the report model from a loaded study (reads the storage once)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return build_report(study_record(study), study.user_attrs, now, servable)


def _prepare_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise TunerError(f"Got {str(out_dir)!r} for --out. It is a file; the report is a folder "
                         "(index.html, plotly.min.js, PNGs). Pass a folder path, e.g. --out report/.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunerError(f"Cannot create the report folder {str(out_dir)!r}: {exc.strerror}. "
                         "Pass a writable path with --out.") from None


def write_report(report: Report, out_dir: Path) -> ReportFiles:
    """Write the page, plotly.js and the PNGs into `out_dir` (created if missing)."""
    from tuner.report.html import render
    from tuner.report.plots import interactive_html, write_plotly_js, write_pngs

    out_dir = Path(out_dir)
    _prepare_dir(out_dir)
    try:
        files = write_pngs(report, out_dir)
        js = write_plotly_js(out_dir)
        page = out_dir / "index.html"
        page.write_text(render(report, interactive_html(report), files), encoding="utf-8")
    except OSError as exc:
        raise TunerError(f"Cannot write the report into {str(out_dir)!r}: {exc}. Pass a writable folder "
                         "with --out (and check the free disk space).") from None
    return ReportFiles(page, js, files.pngs)
