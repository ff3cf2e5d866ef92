"""The search space a user writes (search_spaces/*.yaml), validated: platforms and their
parameters, objectives, constraints, timing, load and price overrides.

Pure data and the rules between its fields; it knows nothing of Optuna. `tuner.search.suggest`
turns a `SearchSpace` into Optuna suggestions, and `tuner.spec.load` reads one from a file.
"""

from __future__ import annotations

from typing import ClassVar, Literal, cast

from pydantic import Field, model_validator

from tuner.cluster_info import ClusterInfo
from tuner.config import ALLOWED_PRECISIONS, PLATFORMS
from tuner.metrics import OBJECTIVES, Constraints
from tuner.spec.measurement import LoadSpec, MeasurementSettings, ServedSettings
from tuner.spec.params import CategoricalParam, IntParam, Strict


class _PlatformSpace(Strict):
    platform_name: ClassVar[str] = ""
    precision: CategoricalParam
    batch_size: IntParam
    replicas: IntParam

    @model_validator(mode="after")
    def _check_precisions(self) -> _PlatformSpace:
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


class Platforms(Strict):
    cpu: CpuSpace | None = None
    gpu: GpuSpace | None = None
    fpga: FpgaSpace | None = None


class ConstraintsSpec(Strict):
    accuracy_min_ratio: float = Field(0.99, gt=0, le=1, description="Share of fp32 accuracy.")
    latency_p95_ms_max: float | None = Field(None, gt=0, description="p95 SLO (ms).")
    cost_usd_per_million_max: float | None = Field(None, gt=0, description="Cost ceiling.")
    trial_memory_gib_max: float | None = Field(
        None, gt=0, description="Largest predicted memory of one CPU trial, all replicas (GiB); "
                                "default a quarter of the cluster's memory.")

    def to_constraints(self) -> Constraints:
        return Constraints(**self.model_dump(exclude={"trial_memory_gib_max"}))


class PriceOverride(Strict):
    usd_per_hour: float = Field(gt=0, description="Hourly price of one unit.")
    source: str = Field(min_length=1, description="Where the price comes from.")


Objective = Literal["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]


class SearchSpace(Strict):
    """A validated search space file."""

    objectives: list[Objective] = Field(
        default_factory=lambda: [cast(Objective, o) for o in OBJECTIVES], min_length=1,
        description="Objectives to optimise (throughput maximised, the others minimised).")
    platforms: Platforms
    constraints: ConstraintsSpec = ConstraintsSpec()
    measure: Literal["served", "engine"] = Field(
        "served", description="served: through the Ray Serve app promote deploys, over HTTP. engine: ONNX Runtime "
        "in a bench process (faster; the ceiling).")
    measurement: MeasurementSettings = MeasurementSettings()
    load: LoadSpec = LoadSpec()
    serving: ServedSettings = ServedSettings()
    prices: dict[str, PriceOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_objectives(self) -> SearchSpace:
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {self.objectives} repeat a name; list each once")
        return self

    def platform(self, name: str) -> CpuSpace | GpuSpace | FpgaSpace | None:
        """The space of one platform, or None when the file does not enable it."""
        space: CpuSpace | GpuSpace | FpgaSpace | None = getattr(self.platforms, name)
        return space

    def enabled_platforms(self) -> list[str]:
        return [p for p in PLATFORMS if self.platform(p) is not None]

    def available_platforms(self, cluster: ClusterInfo | None) -> list[str]:
        """Platforms both enabled here and runnable on the cluster (see `platform_notes`);
        with no cluster (rebuilding a recorded trial), every enabled platform."""
        return [p for p in self.enabled_platforms() if cluster is None or cluster.can_run(p)]

    def platform_notes(self, cluster: ClusterInfo) -> list[str]:
        """One line per enabled platform that the cluster cannot run, saying why."""
        return [
            f"platform {p!r} left out: {cluster.why_not(p)}"
            for p in self.enabled_platforms()
            if not cluster.can_run(p)
        ]

    def devices(self, platform: str) -> list[str]:
        """The devices the space searches for `platform` (empty when it names none)."""
        space = self.platform(platform)
        choices = getattr(space, "device", None)
        return [str(c) for c in choices.choices] if choices is not None else []
