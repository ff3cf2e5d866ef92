"""Fit the DPU cost model's free parameters on AMD's published ZCU104 and U50 measurements.

    /tmp/venv/bin/python experiments/fpga_calibrate.py            # all 20 rows -> dpu_params.yaml
    /tmp/venv/bin/python experiments/fpga_calibrate.py --boards ZCU104 --out /tmp/zcu.yaml

Data: shared/reference/fpga_calibration.csv only (AMD Model Zoo v1.4 / v2.0 tables for
ZCU104 2 x B4096 and Alveo U50 DPUCAHX8H). No other published figure is read.

Fitted (tuner.costmodels.fpga.calibration.FITTED), by scipy least squares on log(predicted / published
multi-thread fps), bounded, three starts, with a weak pull (weight 0.05) towards the priors:
    compute_efficiency, memory_efficiency, layer_overhead_cycles, call_overhead_us
then host_call_overhead_ms.shared_ddr on the ZCU104 1-thread latencies. Every other parameter
keeps its prior (tuner/costmodels/fpga/params.py says why). The reference architectures are built from
their code and exported to ONNX (cached), so the first run takes a few minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.costmodels.fpga.calibration import (  # noqa: E402
    DEFAULT_CSV,
    architecture_layers,
    fit,
    geomean,
    predict,
    read_rows,
)
from tuner.costmodels.fpga.devices import load_devices  # noqa: E402
from tuner.costmodels.fpga.params import PARAMS_FILE, DpuParams, save_params  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="fpga_calibration.csv")
    ap.add_argument("--boards", default="ZCU104,U50", help="boards whose rows to fit (comma-separated)")
    ap.add_argument("--out", type=Path, default=PARAMS_FILE, help="where to write the parameters")
    args = ap.parse_args(argv)

    boards = {b.strip() for b in args.boards.split(",") if b.strip()}
    rows = [r for r in read_rows(args.csv) if r.board in boards]
    if not rows:
        print(f"no rows for boards {sorted(boards)} in {args.csv}", file=sys.stderr)
        return 2
    devices = load_devices()
    t0 = time.perf_counter()
    layers = {arch: architecture_layers(arch, log=print) for arch in sorted({r.arch for r in rows})}
    print(f"analysed {len(layers)} architectures in {time.perf_counter() - t0:.1f} s; fitting "
          f"{len(rows)} rows of {', '.join(sorted(boards))}")
    params = fit(rows, layers, devices, DpuParams(), log=print)
    csv_sha = hashlib.sha256(args.csv.read_bytes()).hexdigest()[:16]
    params = params.replace(fit={**params.fit, "csv": "shared/reference/fpga_calibration.csv",
                                 "csv_sha256_16": csv_sha, "boards": sorted(boards)})
    header = (
        "Free parameters of the DPU cost model (tuner/costmodels/fpga/dpu_model.py, docs/fpga_model.md).\n"
        "WRITTEN BY experiments/fpga_calibrate.py: do not edit by hand; rerun it.\n"
        f"Fitted on {len(rows)} rows of shared/reference/fpga_calibration.csv "
        f"({', '.join(sorted(boards))}), AMD Model Zoo measurements, and on nothing else.\n"
        "'fitted' names the parameters the fit set; the others are priors (see 'notes')."
    )
    save_params(params, args.out, header)
    print(f"\nwrote {args.out}")
    for name in params.fitted:
        base, _, key = name.partition(".")
        value = getattr(params, base)[key] if key else getattr(params, base)
        print(f"  {name:36s} {value:.4g}")
    predictions = [predict(r, layers[r.arch], devices, params) for r in rows]
    print(f"\n{'row':>4} {'board':7}{'model':44}{'fps est.':>10}{'published':>10}{'x':>7}")
    for p in predictions:
        print(f"{p.row.row_id:>4} {p.row.board:7}{p.row.model:44}{p.fps:10.1f}{p.row.fps_multi:10.1f}"
              f"{p.fps / p.row.fps_multi:7.2f}")
    factors = [p.fps_factor for p in predictions]
    print(f"geometric-mean error factor {geomean(factors):.3f}, worst {max(factors):.3f} "
          "(in-sample: see experiments/fpga_validation.py for boards held out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
