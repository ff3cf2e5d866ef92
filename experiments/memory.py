"""Memory: peak memory of a whole `tuner tune` run (the driver, the local Ray cluster it
starts, every replica), as tuner itself prints at the end of each study (PSS summed over
the process tree, sampled every second). Target: <= 3 GB on this machine.

    python experiments/memory.py [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_results

RUNS = [("digits-cnn", 24), ("resnet18", 8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for model, trials in RUNS:
        work = Path(tempfile.mkdtemp(prefix="tuner-memory-"))
        out = subprocess.run([sys.executable, "-m", "tuner", "tune", "--model", model, "--trials", str(trials)],
                             cwd=work, capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise SystemExit(out.stdout + out.stderr)
        peak = re.search(r"peak memory ([0-9.]+) GiB", out.stdout)
        took = re.search(r"failed in (\d+) s", out.stdout)
        rows.append({"model": model, "trials": trials, "peak_memory_gib": float(peak.group(1)),
                     "peak_memory_gb": round(float(peak.group(1)) * 2**30 / 1e9, 3),
                     "wall_s": int(took.group(1)) if took else None})
        if not args.json:
            print(rows[-1], flush=True)
    summary = {"target": "<= 3 GB", "runs": rows, "max_peak_gb": max(r["peak_memory_gb"] for r in rows)}
    path = write_results("memory", rows, summary)
    print(json.dumps(summary, indent=2))
    if not args.json:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
