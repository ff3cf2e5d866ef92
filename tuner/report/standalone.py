"""The report as one file (plotly.js and the PNGs inlined), for places that serve a single file:
the Optuna artifact store the dashboard opens it from."""

from __future__ import annotations

import base64
from pathlib import Path

from tuner.report.plots import PLOTLY_JS

STANDALONE_HTML = "report.html"


def write_standalone(page: Path, plotly_js: Path, pngs: dict[str, Path]) -> Path:
    """Write `report.html` beside `page` with every file it links to inlined; returns its path."""
    html = page.read_text(encoding="utf-8")
    script = plotly_js.read_text(encoding="utf-8").replace("</script", "<\\/script")
    html = html.replace(f'<script src="{PLOTLY_JS}"></script>', f"<script>{script}</script>", 1)
    for png in pngs.values():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
        html = html.replace(f'src="{png.name}"', f'src="{uri}"').replace(f'href="{png.name}"', f'href="{uri}"')
    out = page.with_name(STANDALONE_HTML)
    out.write_text(html, encoding="utf-8")
    return out
