"""What a study says about each of its trials, as typed records: `TrialRecord` and `StudyRecord`.

The one hand-off between reading a study back (`tuner.study.readback`) and everything that reads
trials: the front and the selection policy, the finalists, promote and its verification, the
report and `tuner show`. `to_json()` is the `tuner show --json` contract (README, "Inspect").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuner.config import TrialConfig
from tuner.metrics import Metrics

#: The config keys of the `tuner show --json` contract (the device has its own key).
CONFIG_KEYS = ("platform", "batch_size", "precision", "replicas", "threads_per_replica")


@dataclass(frozen=True)
class Remeasured:
    """A finalist's repeated measurements: how many, each metric's [min, max], the throughput's
    coefficient of variation, and the first measurement (what the trial measured alone)."""

    samples: int
    spread: dict[str, tuple[float, float]]
    throughput_cv: float
    first_measurement: Metrics | None
    disturbed_samples: int = 0  # measurements whose interference record says disturbed

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "spread": {k: list(v) for k, v in self.spread.items()},
                "throughput_cv": self.throughput_cv, "disturbed_samples": self.disturbed_samples,
                "first_measurement": self.first_measurement.to_dict() if self.first_measurement else None}


@dataclass(frozen=True)
class Interference:
    """Other work during a trial's measurement (`tuner.evaluators.interference`; `tuner show --json`
    key ``interference``).

    Attributes:
        disturbed: in a window its figures come from, other processes took more than `share_max`
            of the trial's cores (the disturbed windows it could re-measure were left out first).
        others_share_max: the most they took in one of those windows, 0..1.
        share_max: the threshold it was held to.
        windows_left_out: disturbed windows left out and measured again.
        top_others: the other processes that used most CPU, "name (pid N): X cores".
    """

    disturbed: bool
    others_share_max: float
    share_max: float
    windows_left_out: int
    top_others: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Any) -> Interference | None:
        """From a trial's ``measurement.interference``; None when it was not probed."""
        if not isinstance(d, dict) or not d.get("probed"):
            return None
        return cls(bool(d["disturbed"]), float(d["others_share_max"]), float(d["share_max"]),
                   int(d.get("windows_left_out", 0)), tuple(d.get("top_others") or ()))

    def describe(self) -> str:
        if not self.disturbed:
            return (f"quiet: other processes took at most {self.others_share_max:.0%} of its cores"
                    + (f" ({self.windows_left_out} disturbed window(s) left out and measured again)"
                       if self.windows_left_out else ""))
        return (f"DISTURBED: other processes took up to {self.others_share_max:.0%} of its cores (over the "
                f"{self.share_max:.0%} allowed) after {self.windows_left_out} disturbed window(s) were measured "
                f"again" + (f"; most: {', '.join(self.top_others)}" if self.top_others else ""))

    def to_json(self) -> dict[str, Any]:
        return {"disturbed": self.disturbed, "others_share_max": self.others_share_max, "share_max": self.share_max,
                "windows_left_out": self.windows_left_out, "top_others": list(self.top_others)}


@dataclass(frozen=True)
class GpuRecord:
    """How a gpu trial held and used its GPUs (`tuner show --json` key ``gpu``).

    Attributes:
        backend: "ort" (ONNX Runtime CUDA / TensorRT provider) or "test-cpu" (the TEST backend:
            ONNX Runtime on the CPU behind a declared GPU; its figures are CPU figures).
        test_backend: True for the test backend.
        device: the card's catalog key (its price row is gpu.<device>).
        device_name: the card as CUDA names it.
        providers: ONNX Runtime providers, in order.
        num_gpus_per_replica: each replica actor's Ray `num_gpus` (1, or 1/k when k share one).
        replicas_per_gpu: most replicas on one GPU.
        gpus_used: GPUs the trial occupied.
        gpu_fraction_used: GPUs paid for (replicas x num_gpus_per_replica).
        memory_fraction: each replica's cap on its GPU's memory when it shares one, else None.
        gpu_memory_peak_mib: the largest replica's peak device memory; None when not measurable
            (the test backend), with `gpu_memory_source` saying why.
        gpu_memory_source: where the memory figure comes from.
    """

    backend: str
    test_backend: bool
    device: str
    device_name: str
    providers: tuple[str, ...]
    num_gpus_per_replica: float
    replicas_per_gpu: int
    gpus_used: int
    gpu_fraction_used: float
    memory_fraction: float | None
    gpu_memory_peak_mib: float | None
    gpu_memory_source: str | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GpuRecord:
        return cls(str(d["backend"]), bool(d["test_backend"]), str(d["device"]), str(d["device_name"]),
                   tuple(d.get("providers") or ()), float(d["num_gpus_per_replica"]), int(d["replicas_per_gpu"]),
                   int(d["gpus_used"]), float(d["gpu_fraction_used"]), d.get("memory_fraction"),
                   d.get("gpu_memory_peak_mib"), d.get("gpu_memory_source"))

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "test_backend": self.test_backend, "device": self.device,
                "device_name": self.device_name, "providers": list(self.providers),
                "num_gpus_per_replica": self.num_gpus_per_replica, "replicas_per_gpu": self.replicas_per_gpu,
                "gpus_used": self.gpus_used, "gpu_fraction_used": self.gpu_fraction_used,
                "memory_fraction": self.memory_fraction, "gpu_memory_peak_mib": self.gpu_memory_peak_mib,
                "gpu_memory_source": self.gpu_memory_source}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as tuner reports it.

    Attributes:
        number: the trial's number in the study.
        state: Optuna's state name ("COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING").
        config: the configuration it ran (None when the trial ended before one was chosen).
        metrics: what was measured (a finalist: the medians of its measurements); None when
            nothing was (not runnable, failed, running).
        feasible: COMPLETE and every constraint met.
        pareto: on the feasible Pareto front of the reported metrics (measured trials only,
            reused copies excluded).
        constraints: constraint values by name, feasible when <= 0.
        artifact: absolute path of the ONNX file measured.
        failure: why it could not run or failed.
        reused_from: the trial whose measurement this one copied, if any.
        remeasured: a finalist's repeated measurements.
        level: what `metrics` measure: "served" (through the Ray Serve app, over HTTP),
            "engine" (ONNX Runtime in a bench process) or "estimate" (a cost model).
        engine: a served trial's engine-level figures (the ceiling), if measured.
        gpu: a gpu trial's backend, GPU share and memory; None for other platforms.
        interference: other work during its (first) measurement; None when not probed.
    """

    number: int
    state: str
    config: TrialConfig | None
    metrics: Metrics | None
    feasible: bool = False
    pareto: bool = False
    constraints: dict[str, float] = field(default_factory=dict)
    artifact: str | None = None
    failure: str | None = None
    reused_from: int | None = None
    remeasured: Remeasured | None = None
    level: str | None = None
    engine: Metrics | None = None
    gpu: GpuRecord | None = None
    interference: Interference | None = None

    @property
    def disturbed(self) -> bool:
        """Its figures come from a disturbed measurement (a finalist: most of its measurements)."""
        if self.remeasured is not None:
            return 2 * self.remeasured.disturbed_samples > self.remeasured.samples
        return self.interference is not None and self.interference.disturbed

    @property
    def serving_efficiency(self) -> float | None:
        """Served throughput over the engine's: what the serving stack keeps of the ceiling."""
        if self.level != "served" or self.engine is None or self.metrics is None or self.engine.throughput_rps <= 0:
            return None
        return self.metrics.throughput_rps / self.engine.throughput_rps

    @property
    def measured(self) -> bool:
        """COMPLETE with figures (measured or estimated), not a copy of another trial."""
        return self.state == "COMPLETE" and self.metrics is not None and self.reused_from is None

    @property
    def estimated(self) -> bool:
        return self.metrics is not None and self.metrics.estimated

    @property
    def platform(self) -> str | None:
        return self.config.platform if self.config else None

    def to_json(self) -> dict[str, Any]:
        """The trial as `tuner show --json` prints it."""
        config = self.config.as_contract() if self.config else {k: None for k in CONFIG_KEYS}
        return {
            "number": self.number, "state": self.state, "pareto": self.pareto, "feasible": self.feasible,
            "config": config, "device": self.config.device if self.config else None,
            "metrics": self.metrics.to_dict() if self.metrics else None, "constraints": dict(self.constraints),
            "artifact": self.artifact, "failure": self.failure, "reused_from": self.reused_from,
            "remeasured": self.remeasured.to_json() if self.remeasured else None,
            "level": self.level, "engine": self.engine.to_dict() if self.engine else None,
            "serving_efficiency": self.serving_efficiency,
            "gpu": self.gpu.to_json() if self.gpu else None,
            "interference": self.interference.to_json() if self.interference else None,
            "disturbed": self.disturbed,
        }


@dataclass(frozen=True)
class StudyRecord:
    """A study's trials, with its objectives and their directions."""

    study: str
    directions: tuple[str, ...]
    objectives: tuple[str, ...]
    trials: tuple[TrialRecord, ...]

    @property
    def front(self) -> tuple[TrialRecord, ...]:
        """The feasible Pareto trials, in trial order."""
        return tuple(t for t in self.trials if t.pareto)

    def trial(self, number: int) -> TrialRecord | None:
        return next((t for t in self.trials if t.number == number), None)

    def to_json(self) -> dict[str, Any]:
        """The `tuner show --json` object."""
        return {"study": self.study, "directions": list(self.directions), "objectives": list(self.objectives),
                "trials": [t.to_json() for t in self.trials]}
