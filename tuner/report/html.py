"""Render a `Report` as one HTML page. Every value from the study is escaped here.

Only `Safe` strings (HTML built in this module, with user values passed through `esc`) are
inserted as markup; anything else is escaped on the way in, so a study name or a price source
can never inject tags.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from string import Template
from typing import Any

from tuner.report.build import Chosen, Promotion, Report, TrialPoint, band_text
from tuner.report.plots import PLOTLY_JS, VIEWS, PlotFiles

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#24292f;max-width:1300px;margin:24px auto;padding:0 18px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:30px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a}table{border-collapse:collapse;margin:8px 0;font-size:13.5px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}.est{color:#8250df;font-weight:600}
.box{border:1px solid #d0d7de;border-left:5px solid #f2b705;padding:10px 14px;background:#fffdf5}
.big{font-size:20px;font-weight:600}.note{color:#9a6700}tr.chosen td{background:#fff8c5}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px}dt{color:#57606a}dd{margin:0}
img{max-width:49%;border:1px solid #d0d7de}.src{max-width:560px}
"""
PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tuner report: $title</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>$style</style><script src="$plotly_js"></script></head>
<body>
$body
</body></html>
""")


class Safe(str):
    """Text that is already HTML: built in this module, every user value escaped."""


def esc(value: Any) -> Safe:
    """Escape a value for HTML text or an attribute (Safe values pass through unchanged)."""
    return value if isinstance(value, Safe) else Safe(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


def table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] | set[int] = frozenset(),
          row_class: list[str] | None = None) -> Safe:
    """An HTML table; cells are escaped unless Safe; `numeric` columns are right-aligned."""
    head = join(Safe(f"<th>{esc(h)}</th>") for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_class[i])}"' if row_class and row_class[i] else ""
        cells = join(Safe(f'<td{" class=n" if j in numeric else ""}>{esc(c)}</td>') for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def value_text(v: Any) -> str:
    """Plain text of a free-form value (a promotion's figures): dicts as "k v; k v"."""
    if v is None:
        return ""
    if isinstance(v, Mapping):
        return "; ".join(f"{k} {value_text(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(value_text(x) for x in v)
    return _num(v)


def _spread(p: TrialPoint, key: str, fmt: str) -> str:
    value = fmt.format(getattr(p.metrics, key))
    if p.remeasured and key in p.remeasured.spread:
        lo, hi = p.remeasured.spread[key]
        value += f" ({fmt.format(lo)}–{fmt.format(hi)})"
    return value


def _source(p: TrialPoint) -> Safe:
    if p.estimated:
        band = f", {band_text(p.error_band)}" if p.error_band else ""
        return Safe(f'<span class="est">ESTIMATED (est.)</span> FPGA cost model{esc(band)}')
    noise = Safe(' <span class="est">DISTURBED by other work on this machine</span>') if p.disturbed else Safe("")
    if p.remeasured:
        return Safe(esc(f"median of {p.remeasured.samples} runs, cv {p.remeasured.throughput_cv:.1%}; ranges in ( )")
                    + noise)
    return Safe(esc("measured") + noise)


def _label(p: TrialPoint) -> Safe:
    text = esc(p.config.label())
    return Safe(f'#{p.number} {text}{" <span class=est>(est.)</span>" if p.estimated else ""}')


def status_text(p: TrialPoint) -> str:
    """"pareto", "feasible", or "infeasible: latency_p95_ms over by 15" (the violated constraints)."""
    if p.feasible or not p.violations:
        return p.status
    return "infeasible: " + ", ".join(f"{k} over by {v:.4g}" for k, v in p.violations.items())


def trial_rows(points: Iterable[TrialPoint], chosen: int | None) -> tuple[list[list[Any]], list[str]]:
    rows, classes = [], []
    for p in points:
        rows.append([_label(p), _spread(p, "throughput_rps", "{:,.0f}"), _spread(p, "latency_p50_ms", "{:.3f}"),
                     _spread(p, "latency_p95_ms", "{:.3f}"), _spread(p, "latency_p99_ms", "{:.3f}"),
                     f"{p.metrics.accuracy:.4f}", _spread(p, "cost_usd_per_million", "{:.5f}"), status_text(p),
                     _source(p), p.level or "-", _engine(p)])
        classes.append("chosen" if p.number == chosen else "")
    return rows, classes


TRIAL_HEADERS = ["trial and configuration", "inf/s", "p50 ms", "p95 ms", "p99 ms", "accuracy", "$ per M inf",
                 "status", "figures", "level", "engine inf/s (served / engine)"]


def _engine(p: TrialPoint) -> str:
    """A served trial's engine ceiling and the share of it the serving stack kept."""
    if p.engine_throughput_rps is None:
        return "-"
    eff = f" ({p.serving_efficiency:.3f})" if p.serving_efficiency is not None else ""
    return f"{p.engine_throughput_rps:,.0f}{eff}"
NUMERIC = {1, 2, 3, 4, 5, 6}  # right-aligned columns of TRIAL_HEADERS


def _how(p: TrialPoint) -> Safe:
    if p.estimated:
        band = f"; expected error {band_text(p.error_band)}" if p.error_band else ""
        return Safe(f' <span class="est">(est.: FPGA cost model, not measured{esc(band)})</span>')
    if p.remeasured:
        return esc(f" (median of {p.remeasured.samples} re-measurements)")
    return Safe("")


def _chosen(chosen: Chosen | None, problem: str) -> Safe:
    if chosen is None:
        return Safe(f'<div class="box"><p class="note">Nothing can be chosen yet: {esc(problem)}</p></div>')
    parts = []
    if chosen.point is not None:
        m = chosen.point.metrics
        parts.append(f'<p class="big">{_label(chosen.point)}</p><p>{m.throughput_rps:,.0f} inferences/s, '
                     f"p95 {m.latency_p95_ms:.3f} ms, ${m.cost_usd_per_million:.5f} per million inferences, "
                     f"accuracy {m.accuracy:.4f}{_how(chosen.point)}</p>")
    else:
        parts.append(f'<p class="big">trial #{esc(chosen.number)}</p><p class="note">(not a complete, measured trial '
                     "of this study)</p>")
    pr = chosen.promotion
    if pr is not None:
        who = ", ".join(x for x in (pr.time, f"by {pr.user}" if pr.user else "") if x)
        parts.append(f"<p><b>Why:</b> promoted{esc(' (' + who + ')' if who else '')}: {esc(chosen.reason)}</p>")
        if pr.verdict or pr.served is not None:
            parts.append(f"<p><b>Verdict:</b> {esc(pr.verdict or '-')}"
                         f"{esc('; served: ' + value_text(pr.served)) if pr.served is not None else ''}</p>")
        if pr.figures is not None:
            parts.append(f"<p><b>Trial figures at promotion:</b> {esc(value_text(pr.figures))}</p>")
    else:
        parts.append(f"<p><b>Why:</b> no promotion recorded yet; this is what <code>tuner promote</code> would pick "
                     f"now, by {esc(chosen.reason)}.</p>")
    if chosen.note:
        parts.append(f'<p class="note">{esc(chosen.note)}</p>')
    if chosen.runners_up:
        rows, _ = trial_rows(chosen.runners_up, None)
        runners = table(TRIAL_HEADERS, rows, NUMERIC)
        parts.append(f"<p><b>Runners-up</b> (same policy, in order):</p>{runners}")
    return Safe(f'<div class="box">{"".join(parts)}</div>')


def _plots(plot_div: str, files: PlotFiles) -> Safe:
    imgs = "".join(f'<img src="{esc(files.pngs[v[0]].name)}" alt="{esc(v[5])}">' for v in VIEWS if v[0] in files.pngs)
    links = ", ".join(f'<a href="{esc(p.name)}">{esc(p.name)}</a>' for p in files.pngs.values())
    return Safe(f"<p>Every complete trial. <b>Blue</b>: feasible Pareto front; grey: feasible but dominated; "
                f"faded: infeasible; <span class=est>diamonds (est.)</span>: FPGA figures from the analytical "
                f"cost model, not measured, their bars the typical error band on that board (the worst is in "
                f"the hover text and the tables); star: the chosen configuration. Hover a point for its "
                f"figures.</p>"
                f"{plot_div}<noscript>{imgs}</noscript><p class=sub>Static images for offline readers: {links}</p>")


def _accuracy(report: Report) -> Safe:
    acc = report.accuracy
    if acc is None:
        return Safe("<p>The study records no model accuracy.</p>")
    floor = f"{acc.floor_ratio:.0%} of fp32" if acc.floor_ratio is not None else "none"
    rows = [[r.precision, f"{r.accuracy:.4f}", "-" if r.ratio_to_fp32 is None else f"{r.ratio_to_fp32:.2%}",
             "-" if r.meets_floor is None else ("yes" if r.meets_floor else "NO: its trials are infeasible")]
            for r in acc.rows]
    return Safe(f"<p>The figure is <b>{esc(acc.metric_label)}</b>: {esc(acc.description)}. Measured once per "
                f"precision variant on ONNX Runtime (CPU); FPGA trials use the int8 variant's figure. "
                f"Accuracy floor: {esc(floor)}.</p>"
                + table(["precision", esc(acc.metric_label), "vs fp32", "meets the floor"], rows, {1, 2})
                + (f"<p>Calibration and evaluation inputs: {esc(acc.calibration)}.</p>" if acc.calibration else "")
                + "".join(f"<p>Precision {esc(p)} left out: {esc(why)}.</p>" for p, why in acc.left_out)
                + "".join(f"<p>Model interface: {esc(n)}.</p>" for n in acc.interface_notes))


def _prices(report: Report) -> Safe:
    rows = [[p.key, f"{p.usd_per_hour:.4f}", p.unit, Safe(f'<div class="src">{esc(p.source)}</div>'), p.trials]
            for p in report.prices]
    return Safe("<p>cost per million inferences = hourly price of what a configuration holds (CPU: replicas × "
                "threads vCPUs; FPGA: one board; GPU: one GPU per replica) / (throughput × 3600) × 10<sup>6</sup>. "
                "Prices as recorded in the study.</p>"
                + table(["price key", "$ per hour", "unit", "source", "trials priced"], rows, {1, 4}))


def _promotions(promotions: tuple[Promotion, ...]) -> Safe:
    if not promotions:
        return Safe("<p>No promotion recorded (<code>tuner promote</code> records one).</p>")
    rows = [[p.time, p.user, "" if p.trial is None else f"#{p.trial}", p.policy, p.reason, p.verdict,
             value_text(p.served), value_text(p.figures), value_text(dict(p.extra))] for p in reversed(promotions)]
    return Safe("<p>Newest first.</p>" + table(["time", "user", "trial", "policy", "reason", "verdict", "served",
                                                "trial figures", "other"], rows))


def _facts(report: Report) -> Safe:
    f = report.facts
    c = f.counts
    items = [("study", f.study), ("model", f"{f.model_name} ({f.model_source})"),
             ("objectives", ", ".join(f"{n} ({d})" for n, d in f.objectives)),
             ("constraints", value_text(dict(f.constraints)) or "none"), ("load", value_text(dict(f.load)) or "-"),
             ("trials", f"{c['trials']} in all, {c['complete']} complete: {c['measured']} measured, {c['estimated']} "
                        f"estimated (FPGA), {c['reused']} reused an earlier measurement, "
                        f"{c['not_runnable']} not runnable; "
                        f"{c['failed']} failed"),
             ("front", f"{c['pareto']} feasible Pareto trials of {c['feasible']} feasible ({c['infeasible']} "
                       f"infeasible); finalists re-measured: {c['finalists']}"),
             ("generated", report.generated_at)]
    dl = join(Safe(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>") for k, v in items)
    keys = ["started", "wall_s", "peak_memory_gib", "parallel", "measured", "reused", "not_runnable", "failed"]
    runs = table(["started", "wall s", "peak memory GiB", "parallel", "measured", "reused", "not runnable", "failed",
                  "machine before the run", "trials disturbed by other work"],
                 [[*(_num(r.get(k, "")) for k in keys), _host(r.get("host_before")), _disturbed(r)] for r in f.runs],
                 {1, 2, 3, 4, 5, 6, 7}) if f.runs else \
        Safe("<p>No run recorded.</p>")
    return Safe(f"<dl>{dl}</dl><h3>Runs of <code>tuner tune</code></h3>{runs}")


def render(report: Report, plot_div: str, files: PlotFiles) -> str:
    """The whole page. `plot_div` is plotly's own fragment (its JSON is escaped by plotly)."""
    chosen = report.chosen.number if report.chosen else None
    front_rows, front_cls = trial_rows(report.front, chosen)
    all_points = sorted(report.points, key=lambda p: p.number)
    all_rows, all_cls = trial_rows(all_points, chosen)
    body = [
        f"<h1>Deployment report: {esc(report.facts.study)}</h1>",
        f"<p class=sub>model {esc(report.facts.model_name)} · {report.facts.counts['complete']} complete trials · "
        f"generated {esc(report.generated_at)} by tuner</p>",
        "<h2>Chosen configuration</h2>", _chosen(report.chosen, report.chosen_problem),
        "<h2>Pareto front</h2>", _plots(plot_div, files),
        "<h2>Feasible Pareto trials</h2>",
        "<p>Finalists show the median of their re-measurements with the range in parentheses; rows marked "
        "<span class=est>(est.)</span> are FPGA cost-model estimates, each with its expected error on that board "
        "(typical and worst factor either way, from published figures the model's fit did not see; "
        "<i>uncalibrated</i>: a board with no published figures of its own, whose band is that of boards a "
        "fit never saw). "
        "Level <i>served</i>: measured end to end "
        "through the Ray Serve application promote writes (HTTP client, proxy, batching, ONNX Runtime); "
        "<i>engine</i>: ONNX Runtime timed in a bench process, a ceiling no client sees. A served trial's engine "
        "figure and the share of it that was served stand beside it. A front holds one level: served "
        "trials when the study has any.</p>",
        table(TRIAL_HEADERS, front_rows, NUMERIC, front_cls) if front_rows else "<p>No feasible Pareto trial yet.</p>",
        f"<details><summary>All {len(all_rows)} measured or estimated trials (reused copies and configurations that "
        f"could not run are left out)</summary>{table(TRIAL_HEADERS, all_rows, NUMERIC, all_cls)}</details>",
        "<h2>Accuracy of each precision</h2>", _accuracy(report),
        "<h2>Cost: prices used</h2>", _prices(report),
        "<h2>Promotion history</h2>", _promotions(report.promotions),
        "<h2>Study facts</h2>", _facts(report),
    ]
    return PAGE.substitute(title=esc(report.facts.study), style=STYLE, plotly_js=PLOTLY_JS, body="\n".join(body))


def _disturbed(run: Mapping[str, Any]) -> str:
    """The run's trials measured while other work took their cores, or '-' for runs before it was recorded."""
    if "disturbed_trials" not in run:
        return "-"
    trials = run["disturbed_trials"]
    return f"{len(trials)}: " + ", ".join(f"#{n}" for n in trials) if trials else "none"


def _host(host: object) -> str:
    """How busy the machine was before a run (`tuner.runner.host_load`), or '-' for runs before it was recorded."""
    if not isinstance(host, dict) or "busy_cores" not in host:
        return "-"
    return (f"{'BUSY: ' if host.get('busy') else 'quiet: '}{host['busy_cores']:.1f} of {host.get('cpus', '?')} cores "
            f"used by other work, {host.get('mem_available_gib', 0):.1f} GiB memory available")
