"""Free parameters of the DPU cost model, and the file that holds their fitted values.

Hardware facts (parallelism, clocks, bandwidths, buffers) live in the device catalog with their
sources. What no datasheet gives (how close a DPU gets to its peak, what a layer or a call costs
beyond its arithmetic) is a free parameter here. `experiments/fpga_calibrate.py` fits the ones
marked `fitted` on tuner/catalog/fpga_published.csv only (shared and per board), and writes them to
`tuner/catalog/dpu_params.yaml`; the others keep the prior written below and say why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tuner.catalog import CATALOG_DIR
from tuner.errors import field_error

PARAMS_FILE = CATALOG_DIR / "dpu_params.yaml"
HOST_LINKS = ("shared_ddr", "pcie")
# What a board's own published figures may set (the rest is shared by every board).
BOARD_FITTED = ("compute_efficiency", "memory_efficiency", "layer_overhead_cycles")


@dataclass(frozen=True)
class DpuParams:
    """The cost model's free parameters (units in the names).

    Attributes:
        compute_efficiency: share of the tiled peak MAC rate a busy layer reaches.
        memory_efficiency: share of the board's theoretical off-chip bandwidth that the DPU
            cores, together, get.
        layer_overhead_cycles: fixed DPU cycles per layer (instruction fetch, pipeline fill
            and drain, the first tile's load that nothing overlaps).
        call_overhead_us: fixed DPU-side time of one model call (job start, completion).
        alu_pp_share: pixel parallelism of depthwise conv, pooling and element-wise ops as a
            share of PP (PG338: "half that of the pixel parallelism").
        activation_buffer_share: share of a core's on-chip banks holding feature maps (the
            rest holds weights); decides when a layer spills and re-reads off-chip data.
        host_call_overhead_ms: host-side time of one call by host link (runtime, input
            quantisation and copy, reading the outputs); overlapped by other threads when the
            board is loaded, so it adds to latency, not to throughput.
        host_ops_per_s: host CPU rate for layers the DPU lacks (MACs + bytes touched per s).
        host_threads: host threads whose work overlaps for one DPU core's calls, by host link: a
            loaded board's throughput is capped by host time / threads, not host time.
        host_layer_overhead_us: switching one subgraph between DPU and CPU.
        pcie_gbps / pcie_latency_us: effective host<->card transfer rate and latency.
        boards: per catalog device, the values its own published figures calibrated
            (BOARD_FITTED only); a device without an entry uses the values above.
        fitted: names of the parameters fitted by experiments/fpga_calibrate.py.
        fit: how they were fitted (rows, method, error), as written by the calibration.
    """

    compute_efficiency: float = 0.85
    memory_efficiency: float = 0.70
    layer_overhead_cycles: float = 3000.0
    call_overhead_us: float = 100.0
    alu_pp_share: float = 0.5
    activation_buffer_share: float = 0.5
    host_call_overhead_ms: dict[str, float] = field(
        default_factory=lambda: {"shared_ddr": 0.4, "pcie": 0.4})
    host_ops_per_s: dict[str, float] = field(
        default_factory=lambda: {"shared_ddr": 0.5e9, "pcie": 2.0e9})
    host_threads: dict[str, float] = field(default_factory=lambda: {"shared_ddr": 1.0, "pcie": 8.0})
    host_layer_overhead_us: float = 50.0
    misc_overlap: float = 1.0
    pcie_gbps: float = 12.0
    pcie_latency_us: float = 10.0
    boards: dict[str, dict[str, float]] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> DpuParams:
        """A copy with `changes` applied (e.g. candidate values during a fit)."""
        return dataclasses.replace(self, **changes)

    def for_device(self, device_key: str) -> DpuParams:
        """The parameters a device is priced with: its own calibration where it has one."""
        own: dict[str, Any] = dict(self.boards.get(device_key) or {})
        return dataclasses.replace(self, **own, boards={}) if own else self

    def calibrated(self, device_key: str) -> bool:
        """Whether the device's own published figures calibrated it."""
        return device_key in self.boards


# Where each prior comes from (written beside the value in dpu_params.yaml).
PRIOR_NOTES: dict[str, str] = {
    "compute_efficiency": "prior 0.85: pipeline fill and load/save not fully overlapped",
    "memory_efficiency": "prior 0.70: DDR/HBM bursts rarely exceed 70% of theoretical",
    "layer_overhead_cycles": "prior 3000 cycles (10 us at 300 MHz)",
    "call_overhead_us": "prior 100 us: VART/XRT job submission and completion",
    "alu_pp_share": "hardware fact, not fitted: PG338 'DepthwiseConv' (hardware.md A.1)",
    "activation_buffer_share": "not fitted: half the banks for feature maps (assumption)",
    "host_call_overhead_ms": "prior 0.4 ms per call; fitted for shared_ddr only where "
                             "1-thread latencies exist (ZCU104); pcie stays the prior",
    "host_ops_per_s": "prior: Arm A53 core ~0.5 G simple ops/s, x86 server core ~2 G; pcie fitted (a grid in log "
                      "space, weak pull to the prior) on the PCIe rows whose graphs have host layers (average pools "
                      "that leave padding out on DPUCADF8H, pools too large for the DPU); shared_ddr stays the prior",
    "host_threads": "not fitted: edge boards 1 (a few Arm cores, as fitted before); PCIe cards 8 (the Model Zoo's "
                    "multi-thread runs on an x86 server use 8-20 threads, e.g. 'Thread num = 20' in its U200 table)",
    "host_layer_overhead_us": "not fitted: 50 us to hand a subgraph to the CPU and back",
    "pcie_gbps": "not fitted: PCIe Gen3 x16 in practice (~12 GB/s)",
    "pcie_latency_us": "not fitted: ~10 us per DMA transfer",
}
_NUMBERS = tuple(f.name for f in dataclasses.fields(DpuParams)
                 if f.name not in ("fitted", "fit", "boards", "host_call_overhead_ms", "host_ops_per_s",
                                   "host_threads"))
_PER_LINK = ("host_call_overhead_ms", "host_ops_per_s", "host_threads")


def load_params(path: Path | None = None) -> DpuParams:
    """The model's parameters: the priors, overridden by the values in `path`.

    Args:
        path: a dpu_params.yaml file; None reads the shipped `tuner/catalog/dpu_params.yaml`
            (the priors alone when it does not exist yet).

    Raises:
        TunerError: the file is not YAML, or has an unknown or non-positive parameter.
    """
    path = Path(path or PARAMS_FILE)
    if not path.is_file():
        return DpuParams()
    stat = path.stat()  # part of the cache key: a rewritten file is read again
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path_str: str, _mtime_ns: int, _size: int) -> DpuParams:
    path = Path(path_str)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise field_error(str(path), "invalid YAML", f"It must parse as YAML ({exc}).",
                          "Fix the syntax, or rerun experiments/fpga_calibrate.py.") from exc
    values = raw.get("params", {})
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name in _PER_LINK:
            if not isinstance(value, dict) or set(value) - set(HOST_LINKS):
                raise field_error(f"{path}: params.{name}", value,
                                  f"It must map host links {list(HOST_LINKS)} to numbers.",
                                  "Write e.g. {shared_ddr: 0.4, pcie: 0.4}.")
            changes[name] = {**getattr(DpuParams(), name), **{k: _positive(path, f"{name}.{k}", v)
                                                             for k, v in value.items()}}
        elif name in _NUMBERS:
            changes[name] = _positive(path, name, value)
        else:
            raise field_error(f"{path}: params", name, f"Known parameters: {[*_NUMBERS, *_PER_LINK]}.",
                              "Remove or rename it.")
    boards = raw.get("boards") or {}
    if not isinstance(boards, dict):
        raise field_error(f"{path}: boards", boards, "It must map device keys to parameters.",
                          "Write e.g. {zcu104: {compute_efficiency: 0.9}}, or rerun experiments/fpga_calibrate.py.")
    per_board: dict[str, dict[str, float]] = {}
    for key, values in boards.items():
        if not isinstance(values, dict) or set(values) - set(BOARD_FITTED):
            raise field_error(f"{path}: boards.{key}", values, f"A board may set only {list(BOARD_FITTED)}.",
                              "Remove the other keys, or rerun experiments/fpga_calibrate.py.")
        per_board[str(key)] = {k: _positive(path, f"boards.{key}.{k}", v) for k, v in values.items()}
    return DpuParams(**changes, boards=per_board, fitted=tuple(raw.get("fitted", ())), fit=dict(raw.get("fit", {})))


def _positive(path: Path, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise field_error(f"{path}: params.{name}", value, "It must be a positive number.",
                          "Correct it, or rerun experiments/fpga_calibrate.py.")
    return float(value)


def save_params(params: DpuParams, path: Path, header: str) -> None:
    """Write `params` as a dpu_params.yaml file, `header` as its leading comment."""
    body = {
        "fitted": list(params.fitted),
        "fit": params.fit,
        "params": {name: getattr(params, name) for name in (*_NUMBERS, *_PER_LINK)},
        "boards": params.boards,
        "notes": {name: ("fitted (see fit)" if name in params.fitted else PRIOR_NOTES.get(name, ""))
                  for name in (*_NUMBERS, *_PER_LINK)},
    }
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(body, sort_keys=False, width=100))
