"""Does the `tuner report` page render for a person? Open it in headless Chromium, save a
screenshot, and check it is not blank and that the interactive plot was drawn (offline: the page
loads plotly.js from its own folder; the PNG fallbacks only show without JavaScript).

    python experiments/report_screenshot.py --study NAME [--storage URL] [--out PNG]
    python experiments/report_screenshot.py --html REPORT_DIR/index.html [--out PNG]

Needs Debian's chromium (apt-get install -y chromium). Prints the screenshot's path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "report"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PARETO_BLUE = (0x1F, 0x6F, 0xEB)  # tuner.report.plots.STATUS_COLOR["pareto"]; only plotly draws it


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"No headless browser found ({', '.join(BROWSERS)}). Install one: apt-get install -y chromium")


def screenshot(page: Path, out: Path, size: tuple[int, int] = (1400, 1800), timeout_s: float = 120.0) -> Path:
    """Render `page` (a local HTML file) with headless Chromium into the PNG `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--virtual-time-budget=5000", f"--user-data-dir={profile}",
               f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not out.is_file():
        raise SystemExit(f"Chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def check(png: Path, min_ink: float = 0.02, min_blue: int = 40) -> dict[str, float]:
    """Fail unless the screenshot has content (>= `min_ink` of pixels not near-white) and the
    interactive plot's Pareto points (>= `min_blue` pixels of the front's blue)."""
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)  # height x width x 3
    ink = float((rgb.min(axis=2) < 235).mean())
    blue = int((np.abs(rgb - np.array(PARETO_BLUE)).max(axis=2) <= 12).sum())
    facts = {"width": rgb.shape[1], "height": rgb.shape[0], "ink_share": round(ink, 4), "pareto_blue_px": blue}
    if ink < min_ink:
        raise SystemExit(f"{png} looks blank: only {ink:.2%} of its pixels are not white. {facts}")
    if blue < min_blue:
        raise SystemExit(f"{png}: the interactive plot was not drawn (no Pareto points found; did plotly.js "
                         f"load from the report folder?). {facts}")
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="write this study's report first (tuner report), then screenshot it")
    src.add_argument("--html", type=Path, help="an existing report page (index.html)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL of --study")
    parser.add_argument("--report-dir", type=Path, default=None, help="where to write the report of --study "
                        "(default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "report_screenshot.png", help="screenshot PNG")
    args = parser.parse_args()
    page = args.html
    if args.study is not None:
        from tuner.cli.report import run

        folder = args.report_dir or Path(tempfile.mkdtemp(prefix="tuner-report-"))
        rc = run(argparse.Namespace(study=args.study, storage=args.storage, out=folder, artifacts=None))
        if rc:
            return rc
        page = folder / "index.html"
    if not page.is_file():
        raise SystemExit(f"No report page at {page}. Write one with: tuner report --study NAME --out DIR")
    shot = screenshot(page, args.out)
    print(f"screenshot checks: {check(shot)}")
    print(shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
