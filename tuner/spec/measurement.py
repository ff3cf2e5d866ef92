"""How a measured trial is timed (`MeasurementSettings`), the load it is timed under (`LoadSpec`), and
how a served trial drives its endpoint (`ServedSettings`).

Plain frozen dataclasses, checked in `__post_init__`, so the evaluators, the replica processes and
`experiments/gpu_check.py` (on a GPU machine without pydantic) use them without pydantic; the
search space file validates them through pydantic all the same (unknown keys are refused there
via `__pydantic_config__`). The timing protocol itself is `tuner.evaluators.windows`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal


def _doc(text: str) -> dict[str, str]:
    return {"description": text}


def _at_least(name: str, value: float, low: float, strict: bool) -> None:
    if value < low or (strict and value == low):
        rule = ">" if strict else ">="
        raise ValueError(f"{name} must be {rule} {low:g}, got {value!r}")


@dataclass(frozen=True)
class MeasurementSettings:
    """How a measured (cpu/gpu) trial is timed; see tuner/evaluators/windows.py."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    warmup_s: float = field(default=0.3, metadata=_doc("Load before measuring, discarded."))
    window_s: float = field(default=2.0, metadata=_doc("Shortest measurement window."))
    min_windows: int = field(default=3, metadata=_doc("Windows that must agree; figures come from them."))
    max_windows: int = field(default=8, metadata=_doc("Give up on stability after this many windows."))
    stable_pct: float = field(default=10.0, metadata=_doc("Last windows agree within this %."))
    target_requests: int = field(default=3152, metadata=_doc("Requests wanted in the reported windows."))
    max_measuring_s: float = field(default=30.0, metadata=_doc("Most time under load per trial."))
    min_requests_per_window: int = field(default=3, metadata=_doc("A window lasts until this many."))
    trial_timeout_s: float = field(default=600.0, metadata=_doc("A trial taking longer fails."))
    interference_share_max: float = field(
        default=0.10, metadata=_doc("A window in which other processes took more than this share of the trial's "
                                    "cores is disturbed: left out and measured again."))
    disturbed_windows_max: int = field(
        default=4, metadata=_doc("Disturbed windows re-measured per trial at most; past it the trial keeps "
                                 "disturbed windows and is flagged disturbed."))

    def __post_init__(self) -> None:
        _at_least("warmup_s", self.warmup_s, 0, strict=False)
        _at_least("disturbed_windows_max", self.disturbed_windows_max, 0, strict=False)
        if not 0 < self.interference_share_max <= 1:
            raise ValueError(f"interference_share_max must be in (0, 1], got {self.interference_share_max!r}")
        for name in ("window_s", "stable_pct", "max_measuring_s", "trial_timeout_s"):
            _at_least(name, getattr(self, name), 0, strict=True)
        for name in ("min_windows", "max_windows", "target_requests", "min_requests_per_window"):
            _at_least(name, getattr(self, name), 1, strict=False)
        if self.max_windows < self.min_windows:
            raise ValueError(
                f"max_windows ({self.max_windows}) must be >= min_windows ({self.min_windows})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadSpec:
    """The load a trial is measured under."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    mode: Literal["offline", "server"] = field(
        default="offline",
        metadata=_doc("offline: closed loop, saturating. server: Poisson arrivals at target_rps."))
    target_rps: float | None = field(default=None, metadata=_doc("Arrival rate (requests/s) in server mode."))
    batch_wait_timeout_s: float = field(
        default=0.005, metadata=_doc("Longest wait for a batch to fill (server mode, and when served)."))

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "server"):
            raise ValueError(f"mode must be 'offline' or 'server', got {self.mode!r}")
        if self.target_rps is not None:
            _at_least("target_rps", self.target_rps, 0, strict=True)
        _at_least("batch_wait_timeout_s", self.batch_wait_timeout_s, 0, strict=False)
        if self.mode == "server" and self.target_rps is None:
            raise ValueError("server mode needs target_rps (requests per second), e.g. target_rps: 500")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServedSettings:
    """How a served trial drives its endpoint (see tuner/evaluators/served.py)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    instances_per_request: int = field(default=1, metadata=_doc("Instances each request carries (clients send 1)."))
    binary: bool = field(default=True, metadata=_doc("V2 binary tensors (false: JSON)."))
    concurrency: int | None = field(
        default=None, metadata=_doc("Requests in flight in offline mode (default: replicas x max_ongoing_requests)."))
    stack_cpus: int = field(
        default=1, metadata=_doc("Cores no replica takes: left to the HTTP proxy and the load generator."))
    engine_ceiling: bool = field(
        default=True, metadata=_doc("Also time the engine level of each served trial (the ceiling column)."))
    client_node: Literal["same", "other"] = field(
        default="same", metadata=_doc("Where the load client runs: 'same': in tuner's process, beside the replicas; "
                                      "'other': on another node of the cluster (needs two nodes or more)."))

    def __post_init__(self) -> None:
        if self.client_node not in ("same", "other"):
            raise ValueError(f"client_node must be 'same' or 'other', got {self.client_node!r}")
        _at_least("instances_per_request", self.instances_per_request, 1, strict=False)
        if self.concurrency is not None:
            _at_least("concurrency", self.concurrency, 1, strict=False)
        _at_least("stack_cpus", self.stack_cpus, 0, strict=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
