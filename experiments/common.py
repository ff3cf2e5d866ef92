"""Helpers shared by the experiment scripts: the machine they ran on, result files, wrk scripts, and
the CPU time of a serving stack's processes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import resource
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


class StackCpu:
    """CPU seconds of processes by role ({role: pids}), plus, with `children` (a role name), this
    process's finished children (a load generator run as a subprocess) as that role."""

    def __init__(self, roles: dict[str, list[int]], children: str | None = None) -> None:
        self.roles, self.children = roles, children

    def snapshot(self) -> dict[str, dict[int, float]]:
        import psutil

        out: dict[str, dict[int, float]] = {}
        for role, pids in self.roles.items():
            out[role] = {}
            for pid in pids:
                with contextlib.suppress(psutil.Error):  # gone (a stopped replica, a reloaded HAProxy)
                    out[role][pid] = sum(psutil.Process(pid).cpu_times()[:2])
        if self.children:
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[self.children] = {0: kids.ru_utime + kids.ru_stime}
        return out

    @staticmethod
    def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        """CPU seconds per role between two snapshots, over the processes alive at both."""
        return {role: sum(after[role][pid] - t for pid, t in pids.items() if pid in after[role])
                for role, pids in before.items()}
