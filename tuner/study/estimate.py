"""`tuner estimate`: the FPGA cost model's figures for one configuration, no study, no Ray.

The same code path as an FPGA trial: the int8 variant from `prepare_model`, priced by
`tuner.evaluators.fpga.evaluate_fpga` on the catalog device, cost from the price table. Every
figure is an estimate of the analytical DPU model (no board is attached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config import TrialConfig
from tuner.costmodels.fpga.devices import FpgaDevice, load_devices
from tuner.costmodels.fpga.params import load_params
from tuner.errors import TunerError, field_error
from tuner.evaluators.fpga import evaluate_fpga
from tuner.metrics import METRIC_KEYS
from tuner.models.inputs import ModelOptions
from tuner.prices import PriceTable, load_prices

NO_PRICE = "no price (add one with --price-usd-per-hour or in a search space file)"


@dataclass(frozen=True)
class EstimateOptions:
    """What `tuner estimate` was asked.

    Attributes:
        model: built-in name or path of an .onnx file.
        device: FPGA catalog key (e.g. "zcu104").
        batch_size: inferences per model call.
        replicas: DPU cores, or "max" for every core of the board.
        precision: must be "int8" (DPUs compute in int8 only).
        model_options: what the command line says about an ONNX file's inputs.
        price_usd_per_hour: the board's hourly price, overriding the price table.
        space: search space whose `prices:` apply (None: the shipped table).
        devices_file: a YAML file of extra or overriding FPGA devices.
        all_layers: include every layer's figures (`--layers`).
    """

    model: str
    device: str
    batch_size: int
    replicas: int | str = 1
    precision: str = "int8"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    price_usd_per_hour: float | None = None
    space: str | None = None
    devices_file: Path | None = None
    all_layers: bool = False


def resolve_config(opts: EstimateOptions, devices: dict[str, FpgaDevice]) -> TrialConfig:
    """The TrialConfig of the options, with --replicas max resolved to the board's cores.

    Raises:
        TunerError: unknown device, precision other than int8, bad batch size or replicas.
    """
    if opts.device not in devices:
        raise field_error("--device", opts.device, f"Known FPGA devices: {sorted(devices)}.",
                          "Pick one, or add yours with --devices-file (catalog format).")
    device = devices[opts.device]
    if opts.precision != "int8":
        raise field_error("--precision", opts.precision, "DPUs compute in int8 only.",
                          "Use --precision int8.")
    if isinstance(opts.batch_size, bool) or not isinstance(opts.batch_size, int) or opts.batch_size < 1:
        raise field_error("--batch-size", opts.batch_size, "It must be an integer >= 1.",
                          "Use a batch size of at least 1.")
    if opts.replicas == "max":
        replicas = device.cores
    else:
        try:
            replicas = int(opts.replicas)
        except (TypeError, ValueError):
            replicas = 0
        if not 1 <= replicas <= device.cores or str(replicas) != str(opts.replicas).strip():
            raise field_error(
                "--replicas", opts.replicas,
                f"A replica is one DPU core and {device.key} has {device.cores} "
                f"(with {list(device.batch_engines)} batch engines per core).",
                f"Use 1 to {device.cores}, or 'max' for every core.")
    return TrialConfig("fpga", opts.batch_size, "int8", replicas, 1, device.key)


def board_price(config: TrialConfig, device: FpgaDevice, override_usd_per_hour: float | None,
                space: str | None) -> dict[str, Any] | None:
    """The board's hourly price and its source, or None where no price is known."""
    if override_usd_per_hour is not None:
        if override_usd_per_hour <= 0:
            raise field_error("--price-usd-per-hour", override_usd_per_hour, "It must be > 0.",
                              "Give the board's (or instance's) price in USD per hour.")
        return {"key": device.price_key, "usd_per_hour": float(override_usd_per_hour),
                "source": "--price-usd-per-hour on the command line"}
    table = _price_table(space)
    key = table.key_for(config)
    if key not in table.rows:
        return None
    row = table.row(key)
    return {"key": key, "usd_per_hour": table.usd_per_hour(config), "source": row.source}


def _price_table(space: str | None) -> PriceTable:
    if space is None:
        return load_prices()
    from tuner.spec.load import load_space

    return load_prices(load_space(space).prices)


def estimate_model(opts: EstimateOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Estimate one FPGA configuration of a model; returns the JSON-ready record.

    The record has `config` and `metrics` keyed as in `tuner show --json` (metrics carry
    `estimated: true` and `error_band`, the expected error on this board), plus `device`,
    `price` (None without one), `estimate` (the model's facts: DPU, clock, bound, host layers,
    per-layer times) and `model`.
    """
    from tuner.models.prepare import prepare_model

    devices = load_devices(opts.devices_file)
    config = resolve_config(opts, devices)
    device = devices[opts.device]
    price = board_price(config, device, opts.price_usd_per_hour, opts.space)
    model = prepare_model(opts.model, opts.model_options, {"int8"}, log)
    if "int8" not in model.variants:
        raise TunerError(f"{opts.model}: the FPGA model needs the int8 variant, and it was left out: "
                         f"{model.left_out.get('int8', 'not built')}.")
    variant = model.variants["int8"]
    perf = evaluate_fpga(Path(variant.path).read_bytes(), model.input_shapes(1), config, device,
                         all_layers=opts.all_layers)
    cost = None
    if price is not None:
        cost = price["usd_per_hour"] / (perf.throughput_rps * 3600.0) * 1e6
    values = {
        "throughput_rps": perf.throughput_rps, "latency_p50_ms": perf.latency_p50_ms,
        "latency_p95_ms": perf.latency_p95_ms, "latency_p99_ms": perf.latency_p99_ms,
        "accuracy": variant.accuracy, "cost_usd_per_million": cost, "estimated": True,
        "error_band": perf.details["error_band"],
    }
    metrics = {key: values[key] for key in METRIC_KEYS}  # the order of `tuner show --json`
    details = dict(perf.details)
    details.update({
        "cores": device.cores, "batch_engines": list(device.batch_engines),
        "power_unverified": "power_w" in device.unverified,
        "unverified_parameters": sorted(device.unverified),
        "model_parameters": _params_summary(),
    })
    return {
        "config": config.as_contract(),
        "device": device.key,
        "metrics": metrics,
        "price": price,
        "estimate": details,
        "model": {"name": model.name, "source": model.source, "variant": variant.path,
                  "accuracy_metric": model.accuracy_metric},
    }


def _params_summary() -> dict[str, Any]:
    params = load_params()
    return {"fitted": list(params.fitted), "fit_rows": len(params.fit.get("rows", [])),
            "fit_geomean_error_factor": params.fit.get("fps_geomean_error_factor")}

