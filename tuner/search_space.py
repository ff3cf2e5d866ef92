"""Search space files (search_spaces/*.yaml) -> validated SearchSpace -> TrialConfig.

The same `suggest()` serves the search (an `optuna.Trial`) and deployment (an
`optuna.trial.FixedTrial` built from a chosen trial's params), so the two never disagree.

Parameter names in the study are per platform (``precision.cpu``, ``replicas.fpga``)
because Optuna refuses two distributions under one name. A ``pow2`` integer is searched as
its exponent, named ``batch_size_log2.<platform>``, so samplers keep its order.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuner.cluster_info import ClusterInfo
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.metrics import Constraints
from tuner.yaml_lines import line_of, load_yaml

ALLOWED_PRECISIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32", "fp16", "int8"),
    "gpu": ("fp32", "fp16", "bf16", "int8"),
    "fpga": ("int8",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoricalParam(_Strict):
    """Optuna's CategoricalDistribution: one of `choices`."""

    type: Literal["categorical"] = "categorical"
    choices: list[Union[str, int, float]] = Field(min_length=1, description="Values to choose from.")


class IntParam(_Strict):
    """Optuna's IntDistribution (`low`, `high`, `step`, `log`), plus `pow2` for powers of two."""

    type: Literal["int"] = "int"
    low: int = Field(description="Smallest value (inclusive).")
    high: int = Field(description="Largest value (inclusive).")
    step: int = Field(1, ge=1, description="Spacing between values.")
    log: bool = Field(False, description="Sample on a log scale.")
    pow2: bool = Field(False, description="Only powers of two between low and high.")

    @model_validator(mode="after")
    def _check(self) -> "IntParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high}); swap them")
        if self.pow2:
            for name, v in (("low", self.low), ("high", self.high)):
                if v < 1 or v & (v - 1):
                    raise ValueError(
                        f"{name} is {v} but pow2 needs powers of two (1, 2, 4, ...); "
                        "use the nearest power of two"
                    )
            if self.log or self.step != 1:
                raise ValueError("pow2 cannot be combined with log or step; drop them")
        if self.log and self.low < 1:
            raise ValueError(f"log needs low >= 1, got {self.low}")
        return self

    def values(self) -> list[int]:
        if self.pow2:
            return [2**k for k in range(self.low.bit_length() - 1, self.high.bit_length())]
        return list(range(self.low, self.high + 1, self.step))


ParamSpec = Annotated[Union[CategoricalParam, IntParam], Field(discriminator="type")]


class _PlatformSpace(_Strict):
    platform_name: ClassVar[str] = ""
    precision: CategoricalParam
    batch_size: IntParam
    replicas: IntParam

    @model_validator(mode="after")
    def _check_precisions(self) -> "_PlatformSpace":
        allowed = ALLOWED_PRECISIONS[self.platform_name]
        bad = [p for p in self.precision.choices if p not in allowed]
        if bad:
            raise ValueError(
                f"precision {bad} is not available on {self.platform_name}; "
                f"choose from {list(allowed)}"
            )
        if self.replicas.low < 1:
            raise ValueError(f"replicas.low must be >= 1, got {self.replicas.low}")
        if self.batch_size.low < 1:
            raise ValueError(f"batch_size.low must be >= 1, got {self.batch_size.low}")
        return self


class CpuSpace(_PlatformSpace):
    platform_name: ClassVar[str] = "cpu"
    threads_per_replica: IntParam


class GpuSpace(_PlatformSpace):
    platform_name: ClassVar[str] = "gpu"
    device: CategoricalParam | None = None


class FpgaSpace(_PlatformSpace):
    platform_name: ClassVar[str] = "fpga"
    device: CategoricalParam


class Platforms(_Strict):
    cpu: CpuSpace | None = None
    gpu: GpuSpace | None = None
    fpga: FpgaSpace | None = None


class MeasurementSettings(_Strict):
    """How a measured (cpu/gpu) trial is timed; see tuner/evaluators/protocol.py."""

    warmup_s: float = Field(0.3, ge=0, description="Load before measuring, discarded.")
    window_s: float = Field(2.0, gt=0, description="Shortest measurement window.")
    min_windows: int = Field(3, ge=1, description="Windows that must agree; figures come from them.")
    max_windows: int = Field(8, ge=1, description="Give up on stability after this many windows.")
    stable_pct: float = Field(10.0, gt=0, description="Last windows agree within this %.")
    target_requests: int = Field(3152, ge=1, description="Requests wanted in the reported windows.")
    max_measuring_s: float = Field(30.0, gt=0, description="Most time under load per trial.")
    min_requests_per_window: int = Field(3, ge=1, description="A window lasts until this many.")
    trial_timeout_s: float = Field(600.0, gt=0, description="A trial taking longer fails.")

    @model_validator(mode="after")
    def _check(self) -> "MeasurementSettings":
        if self.max_windows < self.min_windows:
            raise ValueError(
                f"max_windows ({self.max_windows}) must be >= min_windows ({self.min_windows})"
            )
        return self


class LoadSpec(_Strict):
    """The load a trial is measured under."""

    mode: Literal["offline", "server"] = Field(
        "offline", description="offline: closed loop, saturating. server: Poisson arrivals at target_rps.")
    target_rps: float | None = Field(None, gt=0, description="Arrival rate (requests/s) in server mode.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, description="Longest wait for a batch to fill (server mode, and when served).")

    @model_validator(mode="after")
    def _check(self) -> "LoadSpec":
        if self.mode == "server" and self.target_rps is None:
            raise ValueError("server mode needs target_rps (requests per second), e.g. target_rps: 500")
        return self


class ConstraintsSpec(_Strict):
    accuracy_min_ratio: float = Field(0.99, gt=0, le=1, description="Share of fp32 accuracy.")
    latency_p95_ms_max: float | None = Field(None, gt=0, description="p95 SLO (ms).")
    cost_usd_per_million_max: float | None = Field(None, gt=0, description="Cost ceiling.")

    def to_constraints(self) -> Constraints:
        return Constraints(**self.model_dump())


class PriceOverride(_Strict):
    usd_per_hour: float = Field(gt=0, description="Hourly price of one unit.")
    source: str = Field(min_length=1, description="Where the price comes from.")


class SearchSpace(_Strict):
    """A validated search space file."""

    objectives: list[Literal["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]] = Field(
        default_factory=lambda: ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"],
        min_length=1, description="Objectives to optimise (throughput maximised, the others minimised).")
    platforms: Platforms
    constraints: ConstraintsSpec = ConstraintsSpec()
    measurement: MeasurementSettings = MeasurementSettings()
    load: LoadSpec = LoadSpec()
    prices: dict[str, PriceOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_objectives(self) -> "SearchSpace":
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {self.objectives} repeat a name; list each once")
        return self

    def enabled_platforms(self) -> list[str]:
        return [p for p in ("cpu", "gpu", "fpga") if getattr(self.platforms, p) is not None]

    def suggest(self, trial: optuna.trial.BaseTrial, cluster: ClusterInfo) -> TrialConfig:
        """Sample one configuration the cluster can run (impossible ones are never asked)."""
        from tuner.space_sampling import suggest

        return suggest(self, trial, cluster)

    def enumerate(self, cluster: ClusterInfo) -> list[TrialConfig]:
        """Every configuration `suggest` can return on this cluster (the grid)."""
        from tuner.space_sampling import enumerate_configs

        return enumerate_configs(self, cluster)

    def params_for(self, config: TrialConfig) -> dict[str, Any]:
        """The study params that make `suggest` return `config` (for enqueueing it)."""
        from tuner.space_sampling import params_for

        return params_for(self, config)

    def available_platforms(self, cluster: ClusterInfo) -> list[str]:
        """Platforms both enabled here and runnable on the cluster (see `platform_notes`)."""
        return [p for p in self.enabled_platforms() if cluster.can_run(p)]

    def platform_notes(self, cluster: ClusterInfo) -> list[str]:
        """One line per enabled platform that the cluster cannot run, saying why."""
        return [
            f"platform {p!r} left out: {cluster.why_not(p)}"
            for p in self.enabled_platforms()
            if not cluster.can_run(p)
        ]


SHIPPED_DIR = resources.files("search_spaces")


def resolve_space_path(name_or_path: str) -> Path:
    """A path as given, or the shipped space of that name (``default`` -> default.yaml)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    shipped = SHIPPED_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    names = sorted(p.name[:-5] for p in SHIPPED_DIR.iterdir() if p.name.endswith(".yaml"))
    raise TunerError(
        f"Got {name_or_path!r} for --space. It is neither a YAML file nor a shipped space. "
        f"Pass a path to a .yaml file, or one of: {', '.join(names)}."
    )


def load_space(name_or_path: str = "default") -> SearchSpace:
    """Load and validate a search space; errors name the file, line, field and fix."""
    path = resolve_space_path(name_or_path)
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise TunerError(
            f"{path}: the search space must be a YAML mapping with a 'platforms' key, "
            f"got {type(data).__name__}. See search_spaces/default.yaml for the format."
        )
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [x for x in err["loc"] if not (isinstance(x, str) and x in ("categorical", "int"))]
            where = ".".join(str(x) for x in loc) or "(top level)"
            line = line_of(node, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key; remove it or fix its spelling (see README, 'Search space format')"
            elif err["type"] == "missing":
                msg = "required key is missing; add it (search_spaces/default.yaml shows every key)"
            got = f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict) else ""
            lines.append(f"{path}:{line}: {where}: {msg}{got}")
        raise TunerError("Invalid search space:\n  " + "\n  ".join(lines)) from None
    if not space.enabled_platforms():
        raise TunerError(
            f"{path}: 'platforms' enables no platform, so there is nothing to search. "
            "Add at least one of cpu, gpu, fpga under 'platforms'."
        )
    return space


def space_to_yaml_dict(space: SearchSpace) -> dict[str, Any]:
    return space.model_dump(exclude_none=True)
