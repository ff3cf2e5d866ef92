"""`tuner measure`: measure (or estimate, on FPGA) one configuration, without a study."""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

from tuner.cli.common import load_args, model_args, model_options, stdout_to_stderr
from tuner.config import ALLOWED_PRECISIONS, PLATFORMS, PRECISIONS, TrialConfig
from tuner.errors import TunerError
from tuner.metrics import ErrorBand


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("measure", help="measure (or estimate, on FPGA) one configuration, no study",
                       description="Measure one configuration with the same code path as a trial. "
                                   f"Precisions per platform: {ALLOWED_PRECISIONS}.")
    model_args(p, "built-in model or a path to an .onnx file")
    p.add_argument("--platform", required=True, choices=list(PLATFORMS))
    p.add_argument("--precision", required=True, choices=list(PRECISIONS))
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--replicas", default="1", help="replicas (CPU processes, FPGA DPU cores); 'max' on FPGA = every core")
    p.add_argument("--threads-per-replica", type=int, default=1, help="CPU threads per replica (default 1)")
    p.add_argument("--device", default=None, help="FPGA device from the catalog (default aws-f1)")
    p.add_argument("--space", default="default", help="search space whose measurement, load and prices apply")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="join an existing Ray cluster")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--measure", choices=["served", "engine"], default=None,
                   help="served (the Ray Serve app over HTTP) or engine (ONNX Runtime in a bench process); "
                        "default: the search space's measure")
    p.add_argument("--num-gpus", type=int, default=None, metavar="N",
                   help="GPUs the local Ray cluster declares (default: the GPUs Ray detects)")
    p.add_argument("--gpu-backend", choices=["ort", "test-cpu"], default="ort",
                   help="how a gpu configuration runs: ort (default: ONNX Runtime's CUDA provider); test-cpu: FOR "
                        "TESTS ONLY, ONNX Runtime on the CPU behind a declared GPU")
    load_args(p)
    return p


def _config(args: argparse.Namespace) -> TrialConfig:
    if args.replicas == "max" and args.platform == "fpga":
        replicas = 0
    else:
        try:
            replicas = int(args.replicas)
        except ValueError:
            raise TunerError(f"Got {args.replicas!r} for --replicas. Use a positive integer (or 'max' on fpga).") from None
    device = (args.device or "aws-f1") if args.platform == "fpga" else args.device
    return TrialConfig(args.platform, args.batch_size, args.precision, replicas,
                       args.threads_per_replica if args.platform == "cpu" else 1, device)


def run(args: argparse.Namespace) -> int:
    from tuner.study.measure import MeasureOptions, measure

    config = _config(args)
    opts = MeasureOptions(config, args.model, model_options(args), args.space,
                          args.ray_address, args.load_mode, args.target_rps, args.measure, args.num_gpus,
                          args.gpu_backend)
    # With --json, progress and Ray's own messages go to stderr: stdout is the JSON alone.
    with stdout_to_stderr() if args.json else nullcontext():
        result = measure(opts, log=print)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m, meas = result["metrics"], result["measurement"]
    kind = "ESTIMATED by the FPGA cost model" if m["estimated"] else f"measured, {result['level']} level"
    print(f"{config.label()} ({kind}):")
    print(f"  throughput {m['throughput_rps']:,.1f} inf/s; latency p50 {m['latency_p50_ms']:.3f} ms, "
          f"p95 {m['latency_p95_ms']:.3f} ms, p99 {m['latency_p99_ms']:.3f} ms")
    print(f"  accuracy {m['accuracy']:.4f}; ${m['cost_usd_per_million']:.5f} per million ({result['price']['source']})")
    band = ErrorBand.from_dict(m.get("error_band"))
    if band is not None:
        print(f"  expected error of the estimate: {band.label()}; {band.basis}")
    if not m["estimated"]:
        print(f"  {meas['requests']} requests in {meas['windows_used']} of {meas['windows']} windows of "
              f"{meas['window_s']} s ({'stable' if meas['stable'] else 'NOT stable'}, cv {meas['throughput_cv']:.1%}); "
              f"{meas['measuring_s']} s under load, {meas['wall_s']} s in all; cores {meas['hardware']['cores_used']}")
    if result.get("gpu"):
        g = result["gpu"]
        print(f"  gpu: {g['backend']}{' (TEST backend: CPU figures)' if g['test_backend'] else ''} on {g['device_name']}, "
              f"num_gpus {g['num_gpus_per_replica']} per replica, GPU memory peak "
              + (f"{g['gpu_memory_peak_mib']} MiB" if g["gpu_memory_peak_mib"] is not None
                 else f"not measured ({g['gpu_memory_source']})"))
    if result.get("engine"):
        e = result["engine"]
        print(f"  engine level (ONNX Runtime in a bench process, the ceiling): {e['throughput_rps']:,.1f} inf/s, p95 "
              f"{e['latency_p95_ms']:.3f} ms; serving efficiency {result['serving_efficiency']:.3f}")
    return 0
