"""TrialConfig: one deployment configuration, the unit the search proposes and we measure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Platform = Literal["cpu", "gpu", "fpga"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]

PLATFORMS: tuple[str, ...] = ("cpu", "gpu", "fpga")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
#: The precisions each platform can run: the search space's validation, `tuner measure`'s
#: checks and argparse's choices all read this one table.
ALLOWED_PRECISIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32", "fp16", "int8"),
    "gpu": ("fp32", "fp16", "bf16", "int8"),
    "fpga": ("int8",),
}


@dataclass(frozen=True)
class TrialConfig:
    """A deployment configuration.

    Attributes:
        platform: "cpu", "gpu" or "fpga".
        batch_size: inferences per model call (a power of two).
        precision: "fp32", "fp16", "bf16" or "int8".
        replicas: independent model instances serving in parallel (CPU: processes; FPGA: DPU cores).
        threads_per_replica: CPU threads each replica's runtime may use (1 for accelerators'
            host-side work).
        device: the accelerator model for gpu/fpga (e.g. "zcu104"); None on cpu.
    """

    platform: str
    batch_size: int
    precision: str
    replicas: int
    threads_per_replica: int = 1
    device: str | None = None

    def as_contract(self) -> dict[str, Any]:
        """The five config keys of the `tuner show --json` contract."""
        d = asdict(self)
        d.pop("device")
        return d

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def cpus_needed(self) -> int:
        """CPU cores the configuration occupies while measured (or served)."""
        return self.replicas * self.threads_per_replica if self.platform == "cpu" else 1

    def label(self) -> str:
        """Short human-readable form, e.g. "cpu int8 b16 2x1t" or "fpga[zcu104] int8 b4 2 cores"."""
        dev = f"[{self.device}]" if self.device else ""
        layout = (
            f"{self.replicas}x{self.threads_per_replica}t"
            if self.platform == "cpu"
            else f"{self.replicas} {'core' if self.platform == 'fpga' else 'replica'}{'s' if self.replicas > 1 else ''}"
        )
        return f"{self.platform}{dev} {self.precision} b{self.batch_size} {layout}"
