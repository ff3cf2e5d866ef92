"""Plain-text tables of trials for the terminal."""

from __future__ import annotations

from collections.abc import Callable

from tuner.record import TrialRecord


def _config(r: TrialRecord, show: Callable[..., str]) -> str:
    return show(r.config) if r.config else "-"


def _num(r: TrialRecord, key: str, fmt: str) -> str:
    return fmt.format(getattr(r.metrics, key)) if r.metrics else "-"


def _source(r: TrialRecord) -> str:
    if r.metrics is None:
        return ""
    if r.metrics.estimated:
        return "ESTIMATED" + (f" {r.metrics.error_band.short()}" if r.metrics.error_band else "")
    if r.reused_from is not None:
        return f"reused #{r.reused_from}"
    if r.remeasured:
        return f"median of {r.remeasured.samples}"
    return "measured"


def machine_flag(r: TrialRecord) -> str:
    if r.remeasured is not None and r.remeasured.disturbed_samples:
        return f"DISTURBED {r.remeasured.disturbed_samples}/{r.remeasured.samples}"
    return "DISTURBED" if r.interference is not None and r.interference.disturbed else ""


def _state(r: TrialRecord) -> str:
    if r.state != "COMPLETE":
        return r.state
    if r.pareto:
        return "pareto"
    if r.feasible:
        return "ok"
    return "not runnable" if r.metrics is None else "infeasible"


COLUMNS: tuple[tuple[str, Callable[[TrialRecord], str]], ...] = (
    ("#", lambda r: str(r.number)),
    ("platform", lambda r: _config(r, lambda c: c.platform + (f"[{c.device}]" if c.device else
                                                              f"[{r.gpu.device}]" if r.gpu else ""))),
    ("prec", lambda r: _config(r, lambda c: c.precision)),
    ("batch", lambda r: _config(r, lambda c: str(c.batch_size))),
    ("repl x thr", lambda r: _config(r, lambda c: f"{c.replicas}x{c.threads_per_replica}")),
    ("inf/s", lambda r: _num(r, "throughput_rps", "{:,.0f}")),
    ("p50 ms", lambda r: _num(r, "latency_p50_ms", "{:.3f}")),
    ("p95 ms", lambda r: _num(r, "latency_p95_ms", "{:.3f}")),
    ("p99 ms", lambda r: _num(r, "latency_p99_ms", "{:.3f}")),
    ("accuracy", lambda r: _num(r, "accuracy", "{:.4f}")),
    ("$/M inf", lambda r: _num(r, "cost_usd_per_million", "{:.5f}")),
    ("level", lambda r: {"estimate": "model"}.get(r.level or "", r.level or "")),
    ("eff", lambda r: f"{r.serving_efficiency:.3f}" if r.serving_efficiency is not None else "-"),
    ("source", _source),
    ("machine", machine_flag),
    ("state", _state),
)


DISTURBED_LEGEND = ("DISTURBED: while it was measured, other processes on this machine took more of the trial's "
                    "cores than its measurement allows; its figures may be low (tuner show --json: interference)")
BAND_LEGEND = ("ESTIMATED xA/xB: the FPGA cost model's expected error on that board, typical/worst factor either way "
               "(x1.2: within 1/1.2 to 1.2 times the figure), from published figures the fit did not use; "
               "uncalibrated: the board has no published figures of its own, so it carries the widest band of the "
               "boards that have (tuner show --json: error_band; docs/fpga_model.md)")


def legends(records: list[TrialRecord] | tuple[TrialRecord, ...]) -> list[str]:
    """The lines that explain the flags the table of `records` shows (none when it shows none)."""
    out = []
    if any(r.metrics is not None and r.metrics.estimated and r.metrics.error_band for r in records):
        out.append(BAND_LEGEND)
    if any(machine_flag(r) for r in records):
        out.append(DISTURBED_LEGEND)
    return out


def format_table(records: list[TrialRecord] | tuple[TrialRecord, ...]) -> str:
    """Aligned columns, one row per trial record."""
    rows = [[h for h, _ in COLUMNS]] + [[f(r) for _, f in COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fastest_first(records: tuple[TrialRecord, ...]) -> list[TrialRecord]:
    return sorted(records, key=lambda r: -(r.metrics.throughput_rps if r.metrics else 0.0))
