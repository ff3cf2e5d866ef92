"""Typed descriptions of a prepared model: its inputs, its precision variants, their accuracy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """One model input. `shape` is one instance's shape, without the batch dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    def batched(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape)


@dataclass(frozen=True)
class Variant:
    """One precision variant on disk, with its accuracy measured on ONNX Runtime (CPU)."""

    precision: str
    path: str  # absolute path of the .onnx file
    sha256: str
    accuracy: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedModel:
    """A model ready to be measured: fp32 and derived variants, all on disk.

    Attributes:
        name: the model's name (built-in name or file stem).
        source: "builtin" or the absolute path of the user's ONNX file.
        inputs: the graph inputs (batch dimension excluded).
        accuracy_metric: "top1_accuracy" where labels exist, else "fidelity".
        accuracy_description: how the accuracy figure is defined, for reports.
        variants: precision -> Variant.
        interface_notes: how tuner's copy's interface differs from the user's file (fixed
            inputs, batch axes moved first).
        left_out: precision -> why it has no variant (its build failed, or its outputs broke).
        calibration: what the calibration and evaluation inputs are, in words.
        activation_bytes_per_instance: peak activation memory of one fp32 instance (from the graph).
        max_batch: the largest batch the model takes (1 when it fixes its batch), None for any.
    """

    name: str
    source: str
    inputs: tuple[InputSpec, ...]
    accuracy_metric: str
    accuracy_description: str
    variants: dict[str, Variant]
    interface_notes: tuple[str, ...] = ()
    left_out: dict[str, str] = field(default_factory=dict)
    calibration: str = ""
    activation_bytes_per_instance: int = 0
    max_batch: int | None = None

    @property
    def fp32_accuracy(self) -> float:
        return self.variants["fp32"].accuracy

    def input_shapes(self, batch: int = 1) -> dict[str, list[int]]:
        return {s.name: list(s.batched(batch)) for s in self.inputs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparedModel:
        return cls(
            name=d["name"],
            source=d["source"],
            inputs=tuple(InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in d["inputs"]),
            accuracy_metric=d["accuracy_metric"],
            accuracy_description=d["accuracy_description"],
            variants={k: Variant(**v) for k, v in d["variants"].items()},
            interface_notes=tuple(d.get("interface_notes", ())),
            left_out=dict(d.get("left_out", {})),
            calibration=str(d.get("calibration", "")),
            activation_bytes_per_instance=int(d.get("activation_bytes_per_instance", 0)),
            max_batch=d.get("max_batch"),
        )
