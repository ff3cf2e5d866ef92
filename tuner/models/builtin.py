"""Built-in example models: defined in code, trained or seeded in-process, cached by content."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import torch

from tuner.models import cache, digits, resnet
from tuner.models.data import synthetic_inputs
from tuner.models.export import export_onnx
from tuner.models.spec import InputSpec


@dataclass(frozen=True)
class EvalData:
    """Inputs to calibrate int8 on and to measure accuracy on (labels None -> fidelity)."""

    calibration: dict[str, np.ndarray]
    evaluation: dict[str, np.ndarray]
    labels: np.ndarray | None


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    inputs: tuple[InputSpec, ...]
    description: str
    module: ModuleType  # the module defining it; its source is part of the cache key
    build_fp32: Callable[[Path, Callable[[str], None]], None]
    eval_data: Callable[[], EvalData]
    more_modules: tuple[ModuleType, ...] = ()  # further modules its code lives in; in the cache key too


def _digits_fp32(path: Path, log: Callable[[str], None]) -> None:
    data = digits.load_data()
    weights = path.with_name("weights.npz")
    model = digits.DigitsCNN()
    if weights.exists():
        with np.load(weights, allow_pickle=False) as npz:
            model.load_state_dict({k: torch.from_numpy(npz[k]) for k in npz.files})
    else:
        log("training digits-cnn on scikit-learn's digits (first run only; cached after)")
        t0 = time.perf_counter()
        model = digits.train(data)
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        buf = path.with_name(".weights.tmp.npz")
        np.savez(buf, **arrays)
        buf.replace(weights)
        log(f"trained in {time.perf_counter() - t0:.1f} s")
    export_onnx(model.eval(), torch.from_numpy(data.x_test[:2]), path)


def _digits_eval() -> EvalData:
    data = digits.load_data()
    return EvalData({"x": data.x_train[:256]}, {"x": data.x_test}, data.y_test)


def _resnet18_fp32(path: Path, log: Callable[[str], None]) -> None:
    export_onnx(resnet.build(), torch.zeros(2, 3, 224, 224), path)


_RESNET_INPUTS = (InputSpec("x", (3, 224, 224), "float32"),)


def _resnet18_eval() -> EvalData:
    return EvalData(
        synthetic_inputs(_RESNET_INPUTS, 32, seed=0),
        synthetic_inputs(_RESNET_INPUTS, 64, seed=1),
        None,
    )


BUILTINS: dict[str, BuiltinModel] = {
    "digits-cnn": BuiltinModel(
        "digits-cnn",
        (InputSpec("x", (1, 8, 8), "float32"),),
        "small CNN trained on scikit-learn's digits; input [batch, 1, 8, 8] = images / 16",
        digits,
        _digits_fp32,
        _digits_eval,
    ),
    "resnet18": BuiltinModel(
        "resnet18",
        _RESNET_INPUTS,
        "ResNet-18 architecture, seeded random weights; input [batch, 3, 224, 224]",
        resnet,
        _resnet18_fp32,
        _resnet18_eval,
    ),
}


def _zoo_entries() -> dict[str, BuiltinModel]:
    """Reference architectures of tuner.models.zoo (random weights, seeded), as built-ins."""
    from tuner.models.zoo import blocks, classifiers, registry, yolo

    entries = {}
    for name, arch in registry.ARCHITECTURES.items():
        inputs = (InputSpec("x", tuple(arch.input_shape), "float32"),)

        def build(path: Path, log: Callable[[str], None], arch=arch) -> None:
            log(f"exporting {arch.name} (reference architecture, seeded random weights)")
            export_onnx(arch.build().eval(), torch.zeros(2, *arch.input_shape), path)

        def data(inputs=inputs) -> EvalData:
            return EvalData(synthetic_inputs(inputs, 32, seed=0), synthetic_inputs(inputs, 64, seed=1), None)

        entries[name] = BuiltinModel(name, inputs, arch.description, registry, build, data,
                                     (classifiers, yolo, blocks))
    return entries


BUILTINS.update({k: v for k, v in _zoo_entries().items() if k not in BUILTINS})


def builtin_key(model: BuiltinModel) -> str:
    """Hash of what determines the fp32 file: model code, exporter code, library versions."""
    from tuner.models import export

    modules = (model.module, *model.more_modules, export)
    sources = [Path(str(module.__file__)).read_bytes() for module in modules]
    versions = f"{torch.__version__}|{onnx.__version__}|{sys.version_info[:2]}".encode()
    return cache.sha256_bytes(*sources, versions)


def fp32_path(model: BuiltinModel, log: Callable[[str], None]) -> Path:
    """Path of the cached fp32 ONNX of a built-in model, building it on first use."""
    entry = cache.entry_dir(model.name, builtin_key(model))
    path = entry / "fp32.onnx"
    if not path.exists():
        tmp = entry / ".fp32.tmp.onnx"
        model.build_fp32(tmp, log)
        tmp.replace(path)
    return path
