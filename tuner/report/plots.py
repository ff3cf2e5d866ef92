"""The report's plots: an interactive plotly figure (offline) and matplotlib PNGs of the same data.

Two views of every complete trial: throughput vs p95 latency, and cost vs throughput. Feasible
Pareto trials are drawn strong, dominated ones grey, infeasible ones faded; FPGA figures from
the cost model (ESTIMATED) use a diamond marker and "(est.)" in their label, with bars over
their typical error band (the worst factor is in the hover text); the chosen trial is a star.
An axis goes logarithmic when its values span more than a factor of 10.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from tuner.report.build import Report, TrialPoint, band_text

PLOTLY_JS = "plotly.min.js"
DIV_ID = "pareto-plot"
STATUS_ORDER = ("infeasible", "feasible", "pareto")  # faded first, so the front is drawn on top
STATUS_NAME = {"pareto": "feasible Pareto front", "feasible": "feasible, dominated", "infeasible": "infeasible"}
STATUS_COLOR = {"pareto": "#1f6feb", "feasible": "#6e7781", "infeasible": "#afb8c1"}
STATUS_OPACITY = {"pareto": 1.0, "feasible": 0.75, "infeasible": 0.35}
CHOSEN_COLOR = "#f2b705"
VIEWS = (  # (file stem, x metric, y metric, x label, y label, title)
    ("front_latency", "latency_p95_ms", "throughput_rps", "p95 latency (ms)", "throughput (inferences/s)",
     "Throughput vs p95 latency"),
    ("front_cost", "throughput_rps", "cost_usd_per_million", "throughput (inferences/s)",
     "cost (USD per million inferences)", "Cost vs throughput"),
)


@dataclass(frozen=True)
class PlotFiles:
    """PNG files written next to the page, by view stem (front_latency, front_cost)."""

    pngs: dict[str, Path]


def series_name(status: str, estimated: bool) -> str:
    """Legend name of a group of points, e.g. "feasible Pareto front (est.)"."""
    return STATUS_NAME[status] + (" (est.)" if estimated else "")


def _value(p: TrialPoint, key: str) -> float:
    return float(getattr(p.metrics, key))


def _plottable(p: TrialPoint) -> bool:
    return all(math.isfinite(_value(p, k)) and _value(p, k) > 0 for _, x, y, *_ in VIEWS for k in (x, y))


def _groups(report: Report) -> list[tuple[str, bool, list[TrialPoint]]]:
    points = [p for p in report.points if _plottable(p)]
    out = []
    for status in STATUS_ORDER:
        for estimated in (False, True):
            group = [p for p in points if p.status == status and p.estimated == estimated]
            if group:
                out.append((status, estimated, group))
    return out


def _chosen_point(report: Report) -> TrialPoint | None:
    p = report.chosen.point if report.chosen else None
    return p if p is not None and _plottable(p) else None


def _log_axis(values: list[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) > 10


def hover_text(p: TrialPoint) -> str:
    """Plotly hover label of one trial; user data escaped (plotly renders a little HTML)."""
    m = p.metrics
    lines = [f"<b>#{p.number} {html.escape(p.label, quote=False)}</b>",
             f"throughput {m.throughput_rps:,.{0 if m.throughput_rps >= 100 else 1}f} inf/s",
             f"latency p50 {m.latency_p50_ms:.3f} / p95 {m.latency_p95_ms:.3f} / p99 {m.latency_p99_ms:.3f} ms",
             f"cost ${m.cost_usd_per_million:.5f} per million", f"accuracy {m.accuracy:.4f}",
             STATUS_NAME[p.status] + (" · ESTIMATED by the FPGA cost model" if p.estimated else "")]
    if p.error_band:
        lines.append(f"expected error {band_text(p.error_band)}")
    if p.violations:
        lines.append(html.escape("violates " + ", ".join(f"{k} by {v:.4g}" for k, v in p.violations.items()),
                                 quote=False))
    if p.remeasured:
        lo, hi = p.remeasured.spread.get("throughput_rps", (m.throughput_rps, m.throughput_rps))
        lines.append(f"median of {p.remeasured.samples} re-measurements (throughput {lo:,.0f}–{hi:,.0f})")
    return "<br>".join(lines)


def band_bars(points: list[TrialPoint], key: str) -> tuple[list[float], list[float]] | None:
    """Error bars of the typical band of estimates, as (minus, plus) distances from each value:
    a factor f either way spans value / f to value * f. None when no point has a band."""
    if not any(p.error_band for p in points):
        return None
    factors = [p.error_band.typical_factor if p.error_band else 1.0 for p in points]
    values = [_value(p, key) for p in points]
    return [v - v / f for v, f in zip(values, factors)], [v * f - v for v, f in zip(values, factors)]


def _plotly_bars(points: list[TrialPoint], key: str) -> dict | None:
    bars = band_bars(points, key)
    if bars is None:
        return None
    return {"type": "data", "symmetric": False, "arrayminus": bars[0], "array": bars[1], "thickness": 1.2,
            "width": 4}


def plotly_figure(report: Report):
    """The interactive figure: two panels sharing one legend (click an entry to hide a group)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=[v[5] for v in VIEWS], horizontal_spacing=0.1)
    groups = [(series_name(s, e), s, e, pts) for s, e, pts in _groups(report)]
    chosen = _chosen_point(report)
    if chosen is not None:
        groups.append((f"chosen: #{chosen.number}", "chosen", chosen.estimated, [chosen]))
    for name, status, estimated, pts in groups:
        is_chosen = status == "chosen"
        symbol = "star" if is_chosen else ("diamond" if estimated else "circle")
        marker = {"symbol": symbol, "size": 18 if is_chosen else 11,
                  "color": CHOSEN_COLOR if is_chosen else STATUS_COLOR[status],
                  "opacity": 1.0 if is_chosen else STATUS_OPACITY[status],
                  "line": {"width": 1.5 if is_chosen else 1, "color": "#24292f" if is_chosen else "white"}}
        for col, (_, xk, yk, *_rest) in enumerate(VIEWS, start=1):
            fig.add_trace(go.Scatter(
                x=[_value(p, xk) for p in pts], y=[_value(p, yk) for p in pts], mode="markers", name=name,
                legendgroup=name, showlegend=col == 1, marker=marker, text=[hover_text(p) for p in pts],
                hovertemplate="%{text}<extra></extra>", error_x=_plotly_bars(pts, xk), error_y=_plotly_bars(pts, yk)),
                row=1, col=col)
    plotted = [p for _, _, pts in _groups(report) for p in pts]
    for col, (_, xk, yk, xlabel, ylabel, _t) in enumerate(VIEWS, start=1):
        fig.update_xaxes(title_text=xlabel, type="log" if _log_axis([_value(p, xk) for p in plotted]) else "linear",
                         row=1, col=col)
        fig.update_yaxes(title_text=ylabel, type="log" if _log_axis([_value(p, yk) for p in plotted]) else "linear",
                         row=1, col=col)
    fig.update_layout(template="plotly_white", height=560, margin={"l": 70, "r": 30, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.18, "x": 0}, hovermode="closest")
    return fig


def interactive_html(report: Report) -> str:
    """The figure as an HTML fragment (a div and its script); plotly.js itself is loaded by the page."""
    import plotly.io as pio

    return pio.to_html(plotly_figure(report), full_html=False, include_plotlyjs=False, div_id=DIV_ID,
                       config={"displaylogo": False, "responsive": True})


def write_plotly_js(out_dir: Path) -> Path:
    """Write plotly.js next to the page (from the plotly package), so the page works offline."""
    from plotly.offline import get_plotlyjs

    path = out_dir / PLOTLY_JS
    text = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(text.encode()):
        path.write_text(text, encoding="utf-8")
    return path


def _plain_log_ticks(axis, span: float) -> None:
    """Tick labels as plain numbers (0.005, 20, 100,000), not 2x10^1; minor ones (2, 5) only
    when the data spans less than two decades, where major ticks alone say too little."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _pos: int) -> str:
        coeff = round(v / 10 ** math.floor(math.log10(v) + 1e-9)) if v > 0 else 0
        return f"{v:,g}" if span < 100 and coeff in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _png(report: Report, path: Path, view: tuple[str, ...]) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    _, xk, yk, xlabel, ylabel, title = view
    fig = Figure(figsize=(7.5, 5.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    groups = _groups(report)
    for status, estimated, pts in groups:
        xbars, ybars = band_bars(pts, xk), band_bars(pts, yk)
        if xbars or ybars:
            ax.errorbar([_value(p, xk) for p in pts], [_value(p, yk) for p in pts], xerr=xbars, yerr=ybars, fmt="none",
                        ecolor=STATUS_COLOR[status], alpha=STATUS_OPACITY[status], elinewidth=1, capsize=3, zorder=2)
        ax.scatter([_value(p, xk) for p in pts], [_value(p, yk) for p in pts], s=70 if status == "pareto" else 45,
                   marker="D" if estimated else "o", color=STATUS_COLOR[status], alpha=STATUS_OPACITY[status],
                   edgecolors="white", linewidths=0.8, label=series_name(status, estimated), zorder=3)
        if status == "pareto":
            for p in pts:
                ax.annotate(f"#{p.number}{' est.' if p.estimated else ''}", (_value(p, xk), _value(p, yk)),
                            textcoords="offset points", xytext=(6, 5), fontsize=8, color="#24292f")
    chosen = _chosen_point(report)
    if chosen is not None:
        ax.scatter([_value(chosen, xk)], [_value(chosen, yk)], s=300, marker="*", color=CHOSEN_COLOR,
                   edgecolors="#24292f", linewidths=1.0, label=f"chosen: #{chosen.number}", zorder=4)
    plotted = [p for _, _, pts in groups for p in pts]
    if not plotted:
        ax.text(0.5, 0.5, "no complete trial to plot yet", ha="center", va="center", transform=ax.transAxes)
    else:
        for key, axis, scale in ((xk, ax.xaxis, ax.set_xscale), (yk, ax.yaxis, ax.set_yscale)):
            values = [_value(p, key) for p in plotted]
            if _log_axis(values):
                scale("log")
                _plain_log_ticks(axis, max(values) / min(values))
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} · diamonds (est.): FPGA estimates, bars: typical error", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    fig.savefig(path, format="png")


def write_pngs(report: Report, out_dir: Path) -> PlotFiles:
    """Write one PNG per view into `out_dir`; return their paths."""
    pngs = {}
    for view in VIEWS:
        path = out_dir / f"{view[0]}.png"
        _png(report, path, view)
        pngs[view[0]] = path
    return PlotFiles(pngs)
