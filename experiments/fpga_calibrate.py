"""Fit the DPU cost model's free parameters on AMD's published figures of every catalog board.

    python experiments/fpga_calibrate.py                              # every row -> dpu_params.yaml
    python experiments/fpga_calibrate.py --boards zcu104,u50 --out /tmp/two.yaml

Data: tuner/catalog/fpga_published.csv only (AMD Model Zoo tables; experiments/fpga_zoo_extract.py).
Fitted (tuner.costmodels.fpga.fitting), by scipy least squares on log(predicted / published
multi-thread fps), bounded:
    shared:    compute_efficiency, memory_efficiency, layer_overhead_cycles, call_overhead_us,
               then host_call_overhead_ms.shared_ddr on the edge boards' 1-thread latencies,
               and host_ops_per_s.pcie on the PCIe rows that have host layers (a grid search)
    per board: compute_efficiency, memory_efficiency, layer_overhead_cycles on its own rows,
               pulled towards the shared values
Every other parameter keeps its prior (tuner/costmodels/fpga/params.py says why). The reference
architectures are built from their code and exported to ONNX (cached), so the first run takes a
few minutes. experiments/fpga_validation.py says how well this generalises (held-out figures).
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
    geomean,
    predict,
    read_rows,
)
from tuner.costmodels.fpga.devices import load_devices  # noqa: E402
from tuner.costmodels.fpga.fitting import calibrate  # noqa: E402
from tuner.costmodels.fpga.params import PARAMS_FILE, DpuParams, save_params  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="published figures (fpga_published.csv)")
    ap.add_argument("--boards", default=None, help="catalog devices whose rows to fit (comma-separated; default all)")
    ap.add_argument("--out", type=Path, default=PARAMS_FILE, help="where to write the parameters")
    args = ap.parse_args(argv)

    devices = load_devices()
    everything = read_rows(args.csv, devices)
    boards = ({b.strip() for b in args.boards.split(",") if b.strip()} if args.boards
              else {r.device for r in everything})
    rows = [r for r in everything if r.device in boards]
    if not rows:
        print(f"no rows for boards {sorted(boards)} in {args.csv}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    layers = {arch: architecture_layers(arch, log=print) for arch in sorted({r.arch for r in rows})}
    print(f"analysed {len(layers)} architectures in {time.perf_counter() - t0:.1f} s; fitting "
          f"{len(rows)} rows of {', '.join(sorted(boards))}")
    params = calibrate(rows, layers, devices, DpuParams(), log=print)
    csv_sha = hashlib.sha256(args.csv.read_bytes()).hexdigest()[:16]
    params = params.replace(fit={**params.fit, "csv": f"tuner/catalog/{args.csv.name}",
                                 "csv_sha256_16": csv_sha, "boards": sorted(boards)})
    header = (
        "Free parameters of the DPU cost model (tuner/costmodels/fpga/dpu_model.py, docs/fpga_model.md).\n"
        "WRITTEN BY experiments/fpga_calibrate.py: do not edit by hand; rerun it.\n"
        f"Fitted on {len(rows)} rows of tuner/catalog/{args.csv.name} "
        f"({', '.join(sorted(boards))}), AMD Model Zoo measurements, and on nothing else.\n"
        "'fitted' names the parameters the fit set; the others are priors (see 'notes')."
    )
    save_params(params, args.out, header)
    print(f"\nwrote {args.out}")
    for name in params.fitted:
        base, _, key = name.partition(".")
        value = getattr(params, base)[key] if key else getattr(params, base)
        print(f"  {name:36s} {value:.4g}")
    for key, values in params.boards.items():
        print(f"  {key:10s} " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    predictions = [predict(r, layers[r.arch], devices, params) for r in rows]
    print(f"\n{'row':>4} {'board':7}{'model':44}{'fps est.':>10}{'published':>10}{'x':>7}")
    for p in predictions:
        print(f"{p.row.row_id:>4} {p.row.device:8}{p.row.model:44}{p.fps:10.1f}{p.row.fps_multi:10.1f}"
              f"{p.fps / p.row.fps_multi:7.2f}")
    factors = [p.fps_factor for p in predictions]
    print(f"geometric-mean error factor {geomean(factors):.3f}, worst {max(factors):.3f} "
          "(in-sample: see experiments/fpga_validation.py for boards held out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
