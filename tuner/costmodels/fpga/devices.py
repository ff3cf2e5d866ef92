"""The FPGA device catalog: DPU parameters of each board, every figure with its source.

The built-in catalog is `tuner/catalog/fpga_devices.yaml`. Users add or override devices with a
YAML file of the same format (`load_devices(extra_path)`); a device in that file replaces the
built-in device of the same key. Each parameter is written as

    pp: {value: 8, source: "PG338 ...", unverified: false}

so no figure enters the cost model without saying where it comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tuner.catalog import CATALOG_DIR
from tuner.errors import TunerError, field_error

BUILTIN_CATALOG = CATALOG_DIR / "fpga_devices.yaml"
HOST_LINKS: tuple[str, ...] = ("pcie", "shared_ddr")


@dataclass(frozen=True)
class FpgaDevice:
    """One FPGA board with its DPU build, as the cost model sees it.

    Attributes:
        key: catalog key, e.g. "zcu104" (what TrialConfig.device names).
        description: human-readable board and DPU build.
        dpu: DPU family, e.g. "DPUCZDX8G".
        arch: DPU configuration name, e.g. "B4096".
        pp / icp / ocp: pixel, input-channel and output-channel parallelism of one engine.
        cores: DPU cores (kernels) on the board; a replica uses one core.
        batch_engines: engines per core (one entry per core); an engine runs one instance.
        clock_mhz: DPU clock actually achieved (Model Zoo table clock where it differs).
        memory_bandwidth_gbps: theoretical off-chip memory bandwidth shared by all cores.
        onchip_buffer_kb: on-chip feature-map/weight banks of one core.
        host_link: "pcie" (Alveo, AWS F1) or "shared_ddr" (edge boards with their own CPU).
        price_key: key of the device's row in the price table, e.g. "fpga.aws-f1".
        power_w: board power when a sourced figure exists, else None.
        pool_kernel_max: largest pooling window (per side) the DPU runs; a larger one (e.g. a
            global average pool over 14 x 14) runs on the host CPU. None: no limit known.
        misc_engines: lanes (channel_parallel x pixel_parallel per cycle) of the pooling,
            element-wise and depthwise engines, from the DPU's ISA prototxt; a kind it lacks
            (or a device without the field) uses ICP x PP * alu_pp_share.
        feature_buffer_kb: feature-map banks of each batch engine of its own (a Versal
            DPUCVDX8G); a layer whose maps fit them keeps them on-chip. 0: maps go off-chip.
        channel_augmentation: the conv engine's channel_augmentation channel_num (ISA prototxt): a
            conv with fewer input channels than ICP folds kernel columns into up to this many
            channels (the 3-channel first layer). 0: no augmentation.
        avg_pool_counts_padding: the DPU's average pool always divides by the whole window,
            padded cells included (PG400 for DPUCADF8H: "The padded values are counted in any
            case"), so an average pool that must leave padding out (TensorFlow's SAME, ONNX's
            count_include_pad=0) is beyond its limits and runs on the host CPU (UG1414: an
            operator beyond the limits is assigned to the CPU). False: the DPU runs both.
        pl_clock_mhz: a Versal DPU's programmable-logic clock, where its controller and its
            pooling, element-wise and depthwise engines run while the AI Engines do the
            convolutions at `clock_mhz`. None: one clock for everything (the PL DPUs).
        conv_eltwise_cascade: pixel parallelism of the element-wise engine when it is cascaded
            behind the conv engine (the prototxt's eltwise_engine conv_cascade pixel_parallel,
            DPUCVDX8H): an element-wise add that takes a conv's output runs in that conv's
            pass instead of a pass of its own. 0: no cascade (the add is a layer of its own).
        sources: source of each parameter, keyed by parameter name.
        unverified: names of the parameters whose figures are unverified.
    """

    key: str
    description: str
    dpu: str
    arch: str
    pp: int
    icp: int
    ocp: int
    cores: int
    batch_engines: tuple[int, ...]
    clock_mhz: float
    memory_bandwidth_gbps: float
    onchip_buffer_kb: float
    host_link: str
    price_key: str
    power_w: float | None = None
    pool_kernel_max: int | None = None
    pl_clock_mhz: float | None = None
    misc_engines: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    feature_buffer_kb: float = 0.0
    channel_augmentation: int = 0
    avg_pool_counts_padding: bool = False
    conv_eltwise_cascade: int = 0
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    unverified: frozenset[str] = frozenset()

    @property
    def control_clock_mhz(self) -> float:
        """The clock of the DPU's controller and ALU engines (pooling, element-wise, depthwise)."""
        return self.pl_clock_mhz or self.clock_mhz

    @property
    def peak_tops(self) -> float:
        """Peak int8 TOPS of the whole board (2 x PP x ICP x OCP x f x engines)."""
        ops_per_cycle = 2 * self.pp * self.icp * self.ocp * sum(self.batch_engines)
        return ops_per_cycle * self.clock_mhz * 1e6 / 1e12


class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(min_length=3, description="Where the figure comes from (hardware.md).")
    unverified: bool = Field(False, description="True when no primary source confirms it.")


class _Int(_Sourced):
    value: int = Field(gt=0)


class _Float(_Sourced):
    value: float = Field(gt=0)


class _Bool(_Sourced):
    value: bool


class _Str(_Sourced):
    value: str = Field(min_length=1)


class _Engines(_Sourced):
    value: int | list[int] = Field(description="Engines per core: one number, or one per core.")


class _Lanes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel_parallel: int = Field(gt=0)
    pixel_parallel: int = Field(gt=0)


class _MiscEngines(_Sourced):
    value: dict[Literal["pool", "eltwise", "depthwise"], _Lanes] = Field(
        description="Parallelism of the engines beside the conv array, from the DPU's ISA prototxt.")


class _HostLink(_Sourced):
    value: Literal["pcie", "shared_ddr"]


class _DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = Field(min_length=1)
    price_key: str = Field(pattern=r"^fpga\.[a-z0-9][a-z0-9._-]*$")
    dpu: _Str
    arch: _Str
    pp: _Int
    icp: _Int
    ocp: _Int
    cores: _Int
    batch_engines: _Engines
    clock_mhz: _Float
    memory_bandwidth_gbps: _Float
    onchip_buffer_kb: _Float
    host_link: _HostLink
    power_w: _Float | None = None
    pool_kernel_max: _Int | None = None
    pl_clock_mhz: _Float | None = None
    misc_engines: _MiscEngines | None = None
    feature_buffer_kb: _Float | None = None
    channel_augmentation: _Int | None = None
    avg_pool_counts_padding: _Bool | None = None
    conv_eltwise_cascade: _Int | None = None

    @model_validator(mode="after")
    def _engines_match_cores(self) -> _DeviceSpec:
        engines = self.batch_engines.value
        if isinstance(engines, list) and len(engines) != self.cores.value:
            raise ValueError(
                f"batch_engines lists {len(engines)} cores but cores is {self.cores.value}"
            )
        per_core = engines if isinstance(engines, list) else [engines]
        if any(e <= 0 for e in per_core):
            raise ValueError("batch_engines must be positive")
        return self


class _Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    devices: dict[str, _DeviceSpec] = Field(min_length=1)

    @field_validator("devices")
    @classmethod
    def _keys_are_slugs(cls, devices: dict[str, _DeviceSpec]) -> dict[str, _DeviceSpec]:
        for key in devices:
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", key):
                raise ValueError(
                    f"device key {key!r} must be lowercase letters, digits, '.', '_' or '-'"
                )
        return devices


def load_devices(extra_path: Path | None = None) -> dict[str, FpgaDevice]:
    """Load the built-in FPGA catalog, plus the user's devices from `extra_path`.

    Args:
        extra_path: optional YAML file in the catalog format; its devices are added, and
            replace built-in devices of the same key.

    Returns:
        Devices keyed by catalog key.

    Raises:
        TunerError: a file is missing, is not YAML, or breaks the catalog schema.
    """
    devices = _load_file(BUILTIN_CATALOG)
    if extra_path is not None:
        devices.update(_load_file(Path(extra_path)))
    return devices


def _load_file(path: Path) -> dict[str, FpgaDevice]:
    if not path.is_file():
        raise field_error(
            "FPGA device catalog path", str(path), "The file must exist.",
            "Pass the path of a YAML file with a top-level 'devices:' mapping.",
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise field_error(
            f"FPGA device catalog {path}", "invalid YAML", f"The file must parse as YAML ({exc}).",
            "Fix the YAML syntax.",
        ) from exc
    try:
        catalog = _Catalog.model_validate(raw)
    except ValidationError as exc:
        raise _schema_error(path, exc) from exc
    return {key: _to_device(key, spec) for key, spec in catalog.devices.items()}


def _schema_error(path: Path, exc: ValidationError) -> TunerError:
    """The first schema violation, in the house style (field, value, rule, fix)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    value: Any = err.get("input")
    if err["type"] == "extra_forbidden":
        return field_error(
            f"{path}: {where}", where.rsplit(".", 1)[-1],
            "Unknown key: a device has description, price_key, dpu, arch, pp, icp, ocp, cores, "
            "batch_engines, clock_mhz, memory_bandwidth_gbps, onchip_buffer_kb, host_link and "
            "optional power_w, pool_kernel_max, pl_clock_mhz, misc_engines, feature_buffer_kb, channel_augmentation, "
            "avg_pool_counts_padding and conv_eltwise_cascade; each "
            "parameter has value, source and "
            "optional unverified.",
            "Remove or rename the key.",
        )
    if err["type"] == "missing":
        return field_error(
            f"{path}: {where}", None, f"This field is required ({err['msg']}).",
            "Add it; every parameter needs a value and a source (where the figure comes from).",
        )
    fix = _FIXES.get(str(err["loc"][-1]) if err["loc"] else "", "Correct the value.")
    return field_error(f"{path}: {where}", value, f"{err['msg']}.", fix)


_FIXES = {
    "price_key": "Use 'fpga.<board>', the key of the device's row in the price table.",
    "devices": "List at least one device under 'devices:', keyed by a lowercase name.",
}


def _to_device(key: str, spec: _DeviceSpec) -> FpgaDevice:
    params = ("dpu", "arch", "pp", "icp", "ocp", "cores", "batch_engines", "clock_mhz",
              "memory_bandwidth_gbps", "onchip_buffer_kb", "host_link", "power_w", "pool_kernel_max",
              "pl_clock_mhz", "misc_engines", "feature_buffer_kb", "channel_augmentation",
              "avg_pool_counts_padding", "conv_eltwise_cascade")
    sourced = {name: getattr(spec, name) for name in params if getattr(spec, name) is not None}
    engines = spec.batch_engines.value
    per_core = tuple(engines) if isinstance(engines, list) else (engines,) * spec.cores.value
    return FpgaDevice(
        key=key,
        description=spec.description,
        dpu=spec.dpu.value,
        arch=spec.arch.value,
        pp=spec.pp.value,
        icp=spec.icp.value,
        ocp=spec.ocp.value,
        cores=spec.cores.value,
        batch_engines=per_core,
        clock_mhz=spec.clock_mhz.value,
        memory_bandwidth_gbps=spec.memory_bandwidth_gbps.value,
        onchip_buffer_kb=spec.onchip_buffer_kb.value,
        host_link=spec.host_link.value,
        price_key=spec.price_key,
        power_w=spec.power_w.value if spec.power_w is not None else None,
        pool_kernel_max=spec.pool_kernel_max.value if spec.pool_kernel_max is not None else None,
        pl_clock_mhz=spec.pl_clock_mhz.value if spec.pl_clock_mhz is not None else None,
        feature_buffer_kb=spec.feature_buffer_kb.value if spec.feature_buffer_kb is not None else 0.0,
        channel_augmentation=spec.channel_augmentation.value if spec.channel_augmentation is not None else 0,
        avg_pool_counts_padding=bool(spec.avg_pool_counts_padding and spec.avg_pool_counts_padding.value),
        conv_eltwise_cascade=spec.conv_eltwise_cascade.value if spec.conv_eltwise_cascade is not None else 0,
        misc_engines={kind: (lanes.channel_parallel, lanes.pixel_parallel)
                      for kind, lanes in (spec.misc_engines.value.items() if spec.misc_engines else ())},
        sources={name: s.source for name, s in sourced.items()},
        unverified=frozenset(name for name, s in sourced.items() if s.unverified),
    )
