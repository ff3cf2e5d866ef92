"""Plain-text tables of trials for the terminal."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("#", lambda r: str(r["number"])),
    ("platform", lambda r: r["config"]["platform"] + (f"[{r['device']}]" if r.get("device") else "")),
    ("prec", lambda r: r["config"]["precision"]),
    ("batch", lambda r: str(r["config"]["batch_size"])),
    ("repl x thr", lambda r: f"{r['config']['replicas']}x{r['config']['threads_per_replica']}"),
    ("inf/s", lambda r: _num(r, "throughput_rps", "{:,.0f}")),
    ("p50 ms", lambda r: _num(r, "latency_p50_ms", "{:.3f}")),
    ("p95 ms", lambda r: _num(r, "latency_p95_ms", "{:.3f}")),
    ("p99 ms", lambda r: _num(r, "latency_p99_ms", "{:.3f}")),
    ("accuracy", lambda r: _num(r, "accuracy", "{:.4f}")),
    ("$/M inf", lambda r: _num(r, "cost_usd_per_million", "{:.5f}")),
    ("source", lambda r: _source(r)),
    ("state", lambda r: r["state"] if r["state"] != "COMPLETE" else ("pareto" if r["pareto"] else ("ok" if r["feasible"] else ("not runnable" if r["metrics"] is None else "infeasible")))),
)


def _source(rec: dict[str, Any]) -> str:
    if rec["metrics"] is None:
        return ""
    if rec["metrics"]["estimated"]:
        return "ESTIMATED"
    if rec.get("reused_from") is not None:
        return f"reused #{rec['reused_from']}"
    if rec.get("remeasured"):
        return f"median of {rec['remeasured']['samples']}"
    return "measured"


def _num(rec: dict[str, Any], key: str, fmt: str) -> str:
    m = rec.get("metrics")
    if not m or m.get(key) is None:
        return "-"
    return fmt.format(m[key])


def format_table(records: list[dict[str, Any]]) -> str:
    """Aligned columns, one row per trial record (see tuner.study.readback.trial_record)."""
    rows = [[h for h, _ in COLUMNS]] + [[f(r) for _, f in COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
