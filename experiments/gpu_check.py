"""GPU check: the evaluator contract on CUDA, then digits-cnn and resnet18 across batch sizes and
precisions on every GPU backend installed. No Ray, no tuner install: run it from the repository.

    python experiments/gpu_check.py                 # writes experiments/results/gpu/gpu_check.{csv,json}
    python experiments/gpu_check.py --out "$OUT" --quick

Needs torch, onnx, onnxruntime (onnxruntime-gpu for the ort backend) and numpy; onnxscript for the
ONNX export (torch's exporter), scikit-learn to train digits-cnn (without it digits-cnn gets seeded
random weights: the timing is the same) and PyYAML for the card's peaks (without it no
fraction-of-peak). It exits with status 2 and a message on a machine without CUDA.

The contract checks are tuner's own (`tuner.testing.contract`), the ones tests/test_evaluator_contract.py
runs over every evaluator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tuner.models.spec import InputSpec  # noqa: E402
from tuner.spec.measurement import LoadSpec, MeasurementSettings  # noqa: E402
from tuner.testing.contract import check_bench_contract, check_oom  # noqa: E402

RESULTS = ROOT / "experiments" / "results" / "gpu"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


#: Short windows: this script times many configurations inside one call on the GPU machine.
CHECK_SETTINGS = MeasurementSettings(warmup_s=0.2, window_s=0.4, min_windows=3, max_windows=6, stable_pct=10.0,
                                     target_requests=300, max_measuring_s=3.0, min_requests_per_window=3)
OFFLINE = LoadSpec(mode="offline", batch_wait_timeout_s=0.0)


def _log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- models -----------------------

@dataclass(frozen=True)
class CheckModel:
    """A built-in model as the check needs it: ONNX variants by precision, torch source, FLOPs."""

    name: str
    inputs: tuple[InputSpec, ...]
    onnx: dict[str, bytes]  # precision -> ONNX bytes (empty when the export failed)
    torch_source: Any
    gflops: float | None  # per instance, from the ONNX graph
    layers: tuple | None
    weights: str  # how digits-cnn got its weights


def _build_fp32(name: str, notes: list[str]) -> tuple[Path | None, Any, str]:
    """The fp32 ONNX path (None if the export failed), the TorchSource, and the weights' origin."""
    import io

    from tuner.evaluators.gpu_torch_models import TorchSource, torch_source_from_fp32
    from tuner.models.builtin import BUILTINS, fp32_path

    try:
        path = fp32_path(BUILTINS[name], _log)
    except Exception as exc:  # scikit-learn (digits training) or onnxscript (the export) missing
        notes.append(f"{name}: tuner's builder failed ({type(exc).__name__}: {str(exc)[:200]}); "
                     "no ONNX (no ort backend, no FLOPs), torch module only")
        if name != "digits-cnn":
            return None, TorchSource(name), "seeded (code)"
        import torch

        from tuner.models import digits

        torch.manual_seed(0)
        buf = io.BytesIO()
        np.savez(buf, **{k: v.numpy() for k, v in digits.DigitsCNN().state_dict().items()})
        return None, TorchSource(name, buf.getvalue()), "seeded random (could not train; timing is unaffected)"
    if name == "digits-cnn":
        return path, torch_source_from_fp32(name, path), "trained (tuner's cached weights.npz)"
    return path, TorchSource(name), "seeded (code)"


def load_model(name: str, onnx_precisions: tuple[str, ...], notes: list[str]) -> CheckModel:
    """Build (or take from tuner's cache) the variants with tuner's own model code."""
    import onnx

    from tuner.costmodels.gpu.whatif import gflops_per_instance
    from tuner.costmodels.graph.analyze import analyze_graph
    from tuner.models import variants
    from tuner.models.builtin import BUILTINS

    inputs = BUILTINS[name].inputs
    path, source, origin = _build_fp32(name, notes)
    onnx_bytes: dict[str, bytes] = {}
    gflops, layers = None, None
    if path is not None:
        onnx_bytes["fp32"] = path.read_bytes()
        layers = tuple(analyze_graph(onnx.load(str(path)), {s.name: [1, *s.shape] for s in inputs}))
        gflops = gflops_per_instance(layers)
        if "fp16" in onnx_precisions:
            out = path.with_name("gpu_check.fp16.onnx")
            if not out.exists():
                variants.make_fp16(path, out)
            onnx_bytes["fp16"] = out.read_bytes()
        if "int8" in onnx_precisions:
            out = path.with_name("gpu_check.int8.onnx")
            if not out.exists():
                rng = np.random.default_rng(0)
                cal = [{s.name: rng.standard_normal((8, *s.shape)).astype(np.float32) for s in inputs} for _ in range(4)]
                variants.make_int8(path, out, cal)
            onnx_bytes["int8"] = out.read_bytes()
    return CheckModel(name, inputs, onnx_bytes, source, gflops, layers, origin)


# ---------------------------------------------------------------- machine ----------------------

def machine_facts() -> dict[str, Any]:
    import platform
    import socket
    from datetime import datetime, timezone

    from tuner.evaluators.gpu_nvml import device_facts
    from tuner.evaluators.gpu_select import detect_runtime

    facts = detect_runtime()
    out: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname(),
        "python": sys.version.split()[0], "os": platform.platform(), "numpy": np.__version__,
        "torch": facts.torch_version, "torch_cuda": facts.torch_cuda, "onnxruntime": facts.ort_version,
        "ort_providers": list(facts.ort_providers), "gpus": list(facts.device_names),
        "bf16_supported": facts.bf16_supported, **device_facts(0),
    }
    if facts.torch_cuda:
        import torch

        props = torch.cuda.get_device_properties(0)
        out.update(gpu_name=props.name, cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                   gpu_memory_total_mib=round(props.total_memory / 2**20, 1))
    return out


# ---------------------------------------------------------------- measuring --------------------

def _peak(device: Any, precision: str) -> float | None:
    if device is None:
        return None
    try:
        return device.peak_for(precision)
    except Exception:
        return None


def measure(bench: Any, model: CheckModel, backend: str, precision: str, batch: int, device: Any,
            transfers: bool = True) -> dict[str, Any]:
    from tuner.evaluators.windows import run_protocol

    row: dict[str, Any] = {"model": model.name, "backend": backend, "precision": precision, "batch_size": batch,
                           "copies": "timed" if transfers else "excluded"}
    program = model.torch_source if backend == "torch" else model.onnx[precision]
    try:
        bench.prepare(f"{model.name}/{precision}", program, model.inputs, batch)
        result = run_protocol(lambda method, args: [getattr(bench, method)(*(args[0] if isinstance(args, list) else args))],
                              CHECK_SETTINGS, OFFLINE)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        row["status"] = "oom" if "out of memory" in str(exc) else f"error: {text}"
        return row
    info = result.details["replicas"][0]
    row.update(status="ok", throughput_rps=round(result.throughput_rps, 2),
               latency_p50_ms=round(result.latency_p50_ms, 4), latency_p95_ms=round(result.latency_p95_ms, 4),
               latency_p99_ms=round(result.latency_p99_ms, 4), stable=result.details["stable"],
               requests=result.details["requests"], gpu_memory_peak_mib=info.get("gpu_memory_peak_mib"))
    if model.gflops:
        achieved = model.gflops * result.throughput_rps / 1e3
        row["achieved_tflops"] = round(achieved, 4)
        peak = _peak(device, precision)
        if peak:
            row["peak_tflops"] = peak
            row["fraction_of_peak"] = float(f"{achieved / peak:.3g}")  # 3 significant digits: tiny models are far below 1e-5
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ("model", "backend", "precision", "copies", "batch_size", "status", "throughput_rps", "latency_p50_ms",
            "latency_p95_ms", "achieved_tflops", "fraction_of_peak", "gpu_memory_peak_mib")
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def _calibrate(rows: list[dict[str, Any]], models: dict[str, CheckModel], device: Any, card: str) -> dict[str, Any]:
    from tuner.costmodels.gpu.whatif import CalibrationSample, fit_calibration
    from tuner.errors import TunerError

    out: dict[str, Any] = {}
    for precision in PRECISIONS:
        for backend in ("ort", "torch"):
            use = [r for r in rows if r["precision"] == precision and r["backend"] == backend and r.get("status") == "ok"
                   and r["copies"] == "timed" and models[r["model"]].layers]  # the roofline counts the copies
            if len(use) < 3:
                continue
            samples = [CalibrationSample(models[r["model"]].layers, r["batch_size"], r["latency_p50_ms"]) for r in use]
            try:
                fit = fit_calibration(samples, device, precision, card, f"experiments/gpu_check.py, {backend} backend, "
                                      f"{len(samples)} rows (p50 per call)")
            except TunerError as exc:
                out[precision] = {"error": str(exc)}
                continue
            c = fit.calibration
            out[precision] = {"compute_efficiency": round(c.compute_efficiency, 4),
                              "call_overhead_ms": round(c.call_overhead_ms, 4), "measured_on": c.measured_on,
                              "source": c.source, "rel_rmse": round(fit.rel_rmse, 4)}
            break
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_check.csv and gpu_check.json")
    parser.add_argument("--models", nargs="+", default=["digits-cnn", "resnet18"])
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--backends", nargs="+", default=["torch", "ort"], choices=["torch", "ort"])
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop starting new configurations after this")
    parser.add_argument("--quick", action="store_true", help="batches 1, 16, 256 only")
    parser.add_argument("--no-device-only", action="store_true",
                        help="skip the torch resnet18 rows timed without host copies (forward pass vs peak)")
    parser.add_argument("--device-key", help="catalog card to compare with (default: matched from the GPU's name)")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the script itself without a GPU: torch backend on CPU tensors (figures meaningless)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()

    from tuner.evaluators.gpu_select import GpuPlan, GpuRefusal, detect_runtime, plan_gpu

    facts = detect_runtime()
    if not facts.any_gpu_runtime and not args.dry_run_cpu:
        print(f"gpu_check: no CUDA here (torch {facts.torch_version}: CUDA {facts.torch_cuda}; onnxruntime "
              f"{facts.ort_version} providers {list(facts.ort_providers)}). Run it on a machine with an NVIDIA "
              "GPU and torch with CUDA or onnxruntime-gpu.", file=sys.stderr)
        return 2
    from tuner.evaluators.gpu_bench import GpuReplicaBench

    def make_bench(backend: str, precision: str, memory_fraction: float | None = None, transfers: bool = True) -> Any:
        if args.dry_run_cpu:
            from tuner.evaluators.gpu_runners import TorchRunner

            return GpuReplicaBench._on_runner(TorchRunner("cpu", precision, None, transfers), backend, precision)
        return GpuReplicaBench(backend, 0, precision, memory_fraction=memory_fraction, time_transfers=transfers)

    machine = machine_facts()
    if args.dry_run_cpu:
        machine["gpu_name"] = "CPU dry run (no GPU: figures meaningless)"
    card = str(machine.get("gpu_name", "unknown GPU"))
    device = None
    notes: list[str] = []
    try:
        from tuner.costmodels.gpu.devices import load_gpu_devices, match_device

        device = load_gpu_devices()[args.device_key] if args.device_key else match_device(card)
        if device is None:
            notes.append(f"{card} is not in tuner/catalog/gpu_devices.yaml: no fraction of peak")
    except ImportError as exc:
        notes.append(f"PyYAML missing ({exc}): no fraction of peak")
    _log(f"gpu_check on {card} (driver {machine.get('driver_version')}, CUDA {machine.get('cuda_runtime')}); "
         f"catalog device: {device.key if device else None}")
    batches = [1, 16, 256] if args.quick else args.batches
    plans = {}
    for backend in args.backends:
        for precision in args.precisions:
            plan = plan_gpu(precision, facts, has_torch_model=True, prefer=(backend,))
            if args.dry_run_cpu:
                plan = (GpuPlan("torch", precision, (), "CPU dry run") if backend == "torch" and precision != "int8"
                        else GpuRefusal(precision, (f"{backend}: not in a CPU dry run",)))
            if isinstance(plan, GpuRefusal):
                notes.append(plan.message)
            else:
                plans[(backend, precision)] = plan
    onnx_precisions = tuple(p for b, p in plans if b == "ort")  # the ONNX variants only the ort backend runs
    models = {name: load_model(name, onnx_precisions, notes) for name in args.models}
    _log(f"models ready after {time.perf_counter() - t_start:.0f} s; plans: {sorted(plans)}")

    contract: dict[str, Any] = {}
    small = models[args.models[0]]
    for backend in sorted({b for b, _ in plans}):
        program = small.torch_source if backend == "torch" else small.onnx.get("fp32")
        if program is None:
            contract[backend] = "skipped: no fp32 ONNX"
            continue
        try:
            contract[backend] = check_bench_contract(make_bench(backend, "fp32"), program, small.inputs)
        except Exception as exc:
            contract[backend] = f"FAILED: {exc}"
        _log(f"contract [{backend}]: {contract[backend]}")

    rows: list[dict[str, Any]] = []
    benches: dict[tuple[str, str, bool], Any] = {}
    skipped: list[str] = []
    for (backend, precision) in sorted(plans):
        for model in models.values():
            if backend == "ort" and precision not in model.onnx:
                continue
            device_only = backend == "torch" and model.name == "resnet18" and not args.no_device_only
            for transfers in (True, False) if device_only else (True,):
                for batch in batches:
                    if time.perf_counter() - t_start > args.budget_s:
                        skipped.append(f"{model.name}/{backend}/{precision}/b{batch}")
                        continue
                    key = (backend, precision, transfers)
                    if key not in benches:
                        benches[key] = make_bench(backend, precision, transfers=transfers)
                    rows.append(measure(benches[key], model, backend, precision, batch, device, transfers))
                    r = rows[-1]
                    _log(f"{model.name:10s} {backend:5s} {precision:4s} copies {r['copies']:8s} b{batch:<4d} "
                         f"{r['status']:>4s} {r.get('throughput_rps', '')} inf/s p50 {r.get('latency_p50_ms', '')} ms "
                         f"frac {r.get('fraction_of_peak', '')}")
    benches.clear()
    if skipped:
        notes.append(f"time budget of {args.budget_s:g} s reached: {len(skipped)} configurations skipped "
                     f"({', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})")

    if args.dry_run_cpu:
        contract["torch_oom"] = "skipped: CPU dry run"
    elif "torch" in {b for b, _ in plans} and "resnet18" in models:  # last: it caps this process's memory
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()  # the cap counts what the allocator holds: start from a clean pool
        try:
            contract["torch_oom"] = check_oom(lambda: make_bench("torch", "fp32", memory_fraction=0.01),
                                              models["resnet18"].torch_source, models["resnet18"].inputs, 2048)
        except Exception as exc:
            contract["torch_oom"] = f"FAILED: {exc}"
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, 0)
        _log(f"contract [torch OOM]: {contract['torch_oom']}")

    calibration = _calibrate(rows, models, device, card) if device else {}
    over = [r for r in rows if r.get("fraction_of_peak", 0) > 1.0]
    if over:
        notes.append(f"IMPLAUSIBLE: {len(over)} rows above the card's peak (check the peak figures and TF32)")
    best = {}
    for r in rows:
        k = f"{r['model']}/{r['backend']}/{r['precision']}/copies {r['copies']}"
        if r.get("fraction_of_peak") is not None and r["fraction_of_peak"] > best.get(k, {}).get("fraction_of_peak", -1):
            best[k] = {"batch_size": r["batch_size"], "achieved_tflops": r["achieved_tflops"],
                       "fraction_of_peak": r["fraction_of_peak"], "throughput_rps": r["throughput_rps"]}
    print(_table(rows))
    for n in notes:
        print("note:", n)
    args.out.mkdir(parents=True, exist_ok=True)
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out / "gpu_check.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    summary = {"machine": machine, "catalog_device": device.key if device else None,
               "peaks": {p: _peak(device, p) for p in PRECISIONS} if device else None,
               "contract": contract, "best_fraction_of_peak": best, "calibration": calibration,
               "weights": {m.name: m.weights for m in models.values()},
               "gflops_per_instance": {m.name: m.gflops for m in models.values()},
               "notes": notes, "wall_s": round(time.perf_counter() - t_start, 1), "rows": rows}
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _log(f"wrote {args.out / 'gpu_check.csv'} and gpu_check.json in {summary['wall_s']} s")
    failed = [k for k, v in contract.items() if isinstance(v, str) and v.startswith("FAILED")]
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
