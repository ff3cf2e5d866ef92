"""Torch definitions of the built-in models, for the torch backend of the GPU evaluator.

A `TorchSource` names a built-in model and carries whatever its weights need, as plain bytes, so
a Ray worker on another node can rebuild the exact network the fp32 ONNX was exported from:

- digits-cnn: trained weights, read from the `weights.npz` that `tuner.models.builtin` caches next
  to the fp32 ONNX (loaded with `np.load(allow_pickle=False)`: no code runs from the file);
- resnet18 and the zoo architectures: seeded random weights, rebuilt from their code.

Only names in `TORCH_BUILDERS` have a torch definition; a user's ONNX file has none.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuner.errors import field_error

if TYPE_CHECKING:
    import torch

    from tuner.models.spec import PreparedModel

DTYPES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
WEIGHTS_FILE = "weights.npz"


@dataclass(frozen=True)
class TorchSource:
    """What the torch backend builds: a built-in model's name and, if trained, its weights.

    Attributes:
        name: a key of TORCH_BUILDERS, e.g. "digits-cnn".
        weights_npz: the bytes of a `weights.npz` (state_dict arrays), or None for models whose
            weights are seeded in code.
    """

    name: str
    weights_npz: bytes | None = None


def _digits(source: TorchSource) -> torch.nn.Module:
    import torch

    from tuner.models import digits

    model = digits.DigitsCNN()
    if source.weights_npz is None:
        raise field_error(
            "TorchSource.weights_npz", None, "digits-cnn is a trained model: its torch module needs the "
            "trained weights, or it would measure a different network than the ONNX variants.",
            "Use torch_source_for(prepared_model) or torch_source_from_fp32(path), which read the "
            f"{WEIGHTS_FILE} cached next to the fp32 ONNX.",
        )
    with np.load(io.BytesIO(source.weights_npz), allow_pickle=False) as npz:
        model.load_state_dict({k: torch.from_numpy(npz[k].copy()) for k in npz.files})
    return model


def _resnet18(source: TorchSource) -> torch.nn.Module:
    from tuner.models import resnet

    return resnet.build()


def _zoo(name: str) -> Callable[[TorchSource], torch.nn.Module]:
    def build(source: TorchSource) -> torch.nn.Module:
        from tuner.models.zoo.registry import ARCHITECTURES

        return ARCHITECTURES[name].build()

    return build


def _registry() -> dict[str, Callable[[TorchSource], torch.nn.Module]]:
    builders: dict[str, Callable[[TorchSource], torch.nn.Module]] = {
        "digits-cnn": _digits, "resnet18": _resnet18}
    try:
        from tuner.models.zoo.registry import ARCHITECTURES
    except ImportError:  # a stripped-down checkout: the two examples still work
        return builders
    for name in ARCHITECTURES:
        builders.setdefault(name, _zoo(name))
    return builders


TORCH_BUILDERS: dict[str, Callable[[TorchSource], torch.nn.Module]] = _registry()


def has_torch_definition(model_name: str) -> bool:
    return model_name in TORCH_BUILDERS


def build_module(source: TorchSource) -> torch.nn.Module:
    """The fp32 torch module of `source`, in eval mode, on the CPU.

    Raises:
        TunerError: the name has no torch definition, or trained weights are missing.
    """
    if source.name not in TORCH_BUILDERS:
        raise field_error(
            "model", source.name,
            f"The torch backend runs built-in models only ({sorted(TORCH_BUILDERS)}).",
            "Measure ONNX files with the ort backend (onnxruntime-gpu: pip install 'tuner[gpu]').",
        )
    return TORCH_BUILDERS[source.name](source).eval()


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision the torch backend runs (fp32, fp16, bf16)."""
    import torch

    if precision not in DTYPES:
        raise field_error(
            "precision", precision,
            "The torch backend runs fp32, fp16 and bf16; eager torch has no int8 CUDA inference path "
            "(its quantized kernels are CPU-only).",
            "Use fp16 or bf16 on the GPU, or int8 through ONNX Runtime's TensorRT provider.",
        )
    return getattr(torch, DTYPES[precision])


def torch_source_from_fp32(name: str, fp32_path: str | Path) -> TorchSource:
    """The TorchSource of a built-in model whose fp32 ONNX is at `fp32_path`.

    digits-cnn's weights are read from the `weights.npz` beside it (written when it was trained).
    """
    weights = Path(fp32_path).with_name(WEIGHTS_FILE)
    if name == "digits-cnn":
        if not weights.exists():
            raise field_error(
                "fp32_path", str(fp32_path), f"digits-cnn's trained weights must sit beside it as {WEIGHTS_FILE}.",
                "Prepare the model once with tuner (it trains and caches the weights), then retry.",
            )
        return TorchSource(name, weights.read_bytes())
    return TorchSource(name, None)


def torch_source_for(model: PreparedModel) -> TorchSource | None:
    """The TorchSource of a PreparedModel, or None when it has no torch definition."""
    name = model.name
    if not has_torch_definition(name) or getattr(model, "source", "builtin") != "builtin":
        return None
    return torch_source_from_fp32(name, model.variants["fp32"].path)
