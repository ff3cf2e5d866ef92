"""Helpers shared by the experiment scripts: the machine they ran on, and result files."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import onnxruntime
    import optuna
    import psutil
    import ray

    from tuner.evaluators.cpu import cpu_model_name

    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model_name(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "ray": ray.__version__,
        "onnxruntime": onnxruntime.__version__,
        "optuna": optuna.__version__,
    }


def write_results(name: str, rows: list[dict[str, Any]], summary: dict[str, Any]) -> Path:
    """Write results/NAME.csv (rows) and results/NAME.json (summary + machine)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(RESULTS / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"machine": machine(), "summary": summary, "rows": rows}, indent=2) + "\n")
    return out


def wrk_script(body: bytes, headers: dict[str, str], path: Path) -> None:
    """A wrk Lua script at `path` that POSTs `body` (any bytes) with `headers`."""
    lua_body = "".join(f"\\{b:03d}" for b in body)  # a Lua string literal of any bytes
    lines = ['wrk.method = "POST"', f'wrk.body = "{lua_body}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    path.write_text("\n".join(lines) + "\n")
