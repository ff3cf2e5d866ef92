"""Re-measure CPU trials of a study directly with ONNX Runtime, outside tuner and Ray.

Question: does a trial's latency match what anyone gets by loading the same ONNX file in a
plain ONNX Runtime session, with the same batch size and thread count? This script uses
ONNX Runtime's defaults except intra_op_num_threads (it does not reuse tuner's measurement
code), runs calls back to back for --seconds, and prints both sets of figures and their ratio.

    python experiments/remeasure.py --study digits-cnn [--storage sqlite:///tuner.db] [--trials 3,8]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnxruntime as ort
import optuna


def direct_latencies_ms(path: str, shape: list[int], threads: int, seconds: float) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(20):
        sess.run(None, {name: x})
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(lat) < 50:
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        lat.append(time.perf_counter() - t0)
    return np.asarray(lat) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", default="sqlite:///tuner.db")
    parser.add_argument("--trials", default=None, help="comma-separated trial numbers (default: every CPU trial)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    model = study.user_attrs["model"]
    wanted = {int(n) for n in args.trials.split(",")} if args.trials else None
    rows = []
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        cfg = t.user_attrs.get("config", {})
        if cfg.get("platform") != "cpu" or (wanted and t.number not in wanted):
            continue
        shape = [cfg["batch_size"], *model["inputs"][0]["shape"]]
        lat = direct_latencies_ms(t.user_attrs["artifact"], shape, cfg["threads_per_replica"], args.seconds)
        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
        rows.append({
            "trial": t.number, "precision": cfg["precision"], "batch_size": cfg["batch_size"],
            "replicas": cfg["replicas"], "threads": cfg["threads_per_replica"],
            "trial_p50_ms": t.user_attrs["latency_p50_ms"], "direct_p50_ms": float(p50),
            "trial_p95_ms": t.user_attrs["latency_p95_ms"], "direct_p95_ms": float(p95),
            "p50_ratio": t.user_attrs["latency_p50_ms"] / float(p50),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'trial':>5} {'prec':>5} {'batch':>5} {'RxT':>4} {'trial p50':>10} {'direct p50':>11} {'ratio':>6} "
          f"{'trial p95':>10} {'direct p95':>11}")
    for r in rows:
        print(f"{r['trial']:>5} {r['precision']:>5} {r['batch_size']:>5} {r['replicas']}x{r['threads']:<2} "
              f"{r['trial_p50_ms']:>10.3f} {r['direct_p50_ms']:>11.3f} {r['p50_ratio']:>6.2f} "
              f"{r['trial_p95_ms']:>10.3f} {r['direct_p95_ms']:>11.3f}")
    ratios = np.array([r["p50_ratio"] for r in rows])
    if len(ratios):
        print(f"\np50 ratio trial/direct over {len(ratios)} trials: median {np.median(ratios):.2f}, "
              f"min {ratios.min():.2f}, max {ratios.max():.2f}")


if __name__ == "__main__":
    main()
