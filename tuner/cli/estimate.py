"""`tuner estimate`: print the FPGA cost model's figures for one configuration (ESTIMATED)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tuner.cli.common import model_options, onnx_input_args
from tuner.metrics import ErrorBand
from tuner.study.estimate import NO_PRICE, EstimateOptions, estimate_model

EST = "(est.)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `estimate` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "estimate", help="FPGA cost-model estimate of one configuration (ESTIMATED, no board)",
        description="Estimate throughput, latency, cost and power of a model on an FPGA DPU with "
                    "the analytical cost model (the same code path as an FPGA trial). Every figure "
                    "is an estimate; see docs/fpga_model.md.")
    p.add_argument("--model", required=True, help="built-in model (e.g. resnet50, mobilenet_v2, "
                   "yolov3) or a path to an .onnx file")
    onnx_input_args(p)
    p.add_argument("--platform", default="fpga", choices=["fpga"],
                   help="fpga (the only platform the cost model prices)")
    p.add_argument("--device", required=True, help="FPGA device from the catalog (e.g. zcu104, u50, aws-f1)")
    p.add_argument("--devices-file", type=Path, default=None,
                   help="YAML file of extra or overriding FPGA devices (catalog format)")
    p.add_argument("--precision", default="int8", help="int8 (DPUs compute in int8 only)")
    p.add_argument("--batch-size", type=int, required=True, help="inferences per model call")
    p.add_argument("--replicas", default="1", help="DPU cores in use, or 'max' for every core")
    p.add_argument("--price-usd-per-hour", type=float, default=None,
                   help="the board's (or instance's) hourly price, overriding the price table")
    p.add_argument("--space", default=None, help="search space whose prices apply")
    p.add_argument("--layers", action="store_true", help="print the per-layer breakdown")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    """Run `tuner estimate`; TunerErrors propagate to the CLI's handler."""
    opts = EstimateOptions(
        model=args.model, device=args.device, batch_size=args.batch_size, replicas=args.replicas,
        precision=args.precision, model_options=model_options(args),
        price_usd_per_hour=args.price_usd_per_hour, space=args.space,
        devices_file=args.devices_file, all_layers=args.layers)
    record = estimate_model(opts, log=(lambda s: None) if args.json else print)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(format_record(record, args.layers))
    return 0


def format_record(record: dict[str, Any], layers: bool = False) -> str:
    """The human-readable report of an estimate record; every figure marked (est.)."""
    m, e, c, price = record["metrics"], record["estimate"], record["config"], record["price"]
    batch = c["batch_size"]
    engines = e["batch_engines"]
    lines = [
        f"{record['model']['name']} on fpga[{record['device']}] int8 b{batch} "
        f"{c['replicas']} of {e['cores']} cores: ESTIMATED by the analytical DPU cost model "
        "(no board measured)",
        *_band_lines(ErrorBand.from_dict(m.get("error_band")), record["device"]),
        f"  throughput   {m['throughput_rps']:,.1f} inf/s {EST}",
        f"  latency      {m['latency_p50_ms']:.3f} ms per call of {batch} {EST}  "
        f"[DPU {e['dpu_ms']:.3f} ms + host {e['host_ms']:.3f} ms]",
    ]
    if price is None:
        lines.append(f"  cost         {NO_PRICE}")
    else:
        lines.append(f"  cost         ${m['cost_usd_per_million']:.4f} per million {EST} at "
                     f"${price['usd_per_hour']}/h ({price['source']})")
    if e["power_w"] is None:
        lines.append("  power        no sourced figure for this board")
    else:
        unverified = ", unverified" if e["power_unverified"] else ""
        lines.append(f"  power        {e['power_w']:g} W board power (catalog{unverified}); "
                     f"{m['throughput_rps'] / e['power_w']:.1f} inf/J {EST}")
    lines += [
        f"  accuracy     {m['accuracy']:.4f} ({record['model']['accuracy_metric']} of the int8 "
        "variant, measured on CPU)",
        f"  DPU          {e['dpu']}, {e['cores']} cores x {engines} engines @ {e['clock_mhz']:g} MHz, "
        f"peak {e['peak_tops']:.2f} TOPS; {e['engines_used']} engine(s) busy per core",
        f"  model        {e['gops_per_instance']:.2f} GOP per inference; limited by "
        f"{e['limited_by'].replace('_', ' ')}",
        f"  host layers  {', '.join(e['host_layers']) or 'none (the whole graph runs on the DPU)'}",
    ]
    if e["unverified_parameters"]:
        lines.append(f"  unverified   catalog figures: {', '.join(e['unverified_parameters'])}")
    rows = e.get("layers") if layers else None
    if rows:
        lines += ["", f"per-layer breakdown of one call {EST}:", _layer_table(rows)]
    elif not layers:
        lines.append("  (--layers prints the per-layer breakdown)")
    return "\n".join(lines)


def _band_lines(band: ErrorBand | None, device: str) -> list[str]:
    """The expected error of the figures below, and where it comes from."""
    if band is None:
        return ["  error band   none on record for this estimate"]
    basis = f"from {band.basis}" if band.rows else band.basis
    why = "" if band.calibrated else f"{device} has no published figures of its own: the uncalibrated band, "
    return [f"  error band   {band.label()}: the expected error of throughput, latency and cost {EST}",
            f"               {why}{basis}"]


def _layer_table(rows: list[dict[str, Any]]) -> str:
    header = ("layer", "op", "kind", "MMAC", "time us", "share", "bound", "util", "off-chip KB")
    total = sum(r["time_us"] for r in rows) or 1.0
    body = [
        (r["name"][:40], r["op_type"], r["kind"], f"{r['macs'] / 1e6:.2f}", f"{r['time_us']:.1f}",
         f"{r['time_us'] / total:.1%}", r["bound"], f"{r['utilisation']:.2f}" if r["utilisation"] else "-",
         f"{r['offchip_bytes'] / 1024:.0f}")
        for r in rows if r["time_us"] > 0
    ]
    table = [header, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
