"""--model -> PreparedModel: fp32 ONNX, derived precision variants, each with measured accuracy.

Accuracy depends on the precision variant only (not on batch size or replicas), so it is
measured once per variant, on ONNX Runtime's CPU provider, and cached beside the variant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tuner.errors import TunerError
from tuner.models import accuracy, cache, variants
from tuner.models.builtin import BUILTINS, EvalData, fp32_path
from tuner.models.data import split_batches, synthetic_inputs
from tuner.models.onnx_file import cached_fp32
from tuner.models.spec import InputSpec, PreparedModel, Variant

# Precisions ONNX Runtime's CPU provider can build and run here; bf16 needs a GPU.
CPU_BUILDABLE = ("fp32", "fp16", "int8")


def model_name(model_arg: str) -> str:
    """The study-friendly name of a --model argument (built-in name or file stem)."""
    return model_arg if model_arg in BUILTINS else Path(model_arg).stem


def check_model_arg(model_arg: str, input_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a bad --model / --input-shape in milliseconds, before anything slow starts."""
    from tuner.models.onnx_file import load_checked, resolve_inputs

    if model_arg in BUILTINS:
        if input_shapes:
            raise TunerError(f"--input-shape applies to ONNX files only; {model_arg!r} is built in. Drop it.")
        return
    path = Path(model_arg)
    resolve_inputs(load_checked(path), input_shapes, path)


def prepare_model(
    model_arg: str,
    input_shapes: dict[str, tuple[int, ...]],
    precisions: set[str],
    log: Callable[[str], None] = print,
) -> PreparedModel:
    """Build (or load from the cache) every requested variant and its accuracy.

    Args:
        model_arg: a built-in name (digits-cnn, resnet18) or a path to an .onnx file.
        input_shapes: per-instance shapes for dynamic non-batch dims (ONNX files only).
        precisions: precisions the search may use; fp32 is always prepared (the reference).
        log: where progress lines go.
    """
    if model_arg in BUILTINS:
        if input_shapes:
            raise TunerError(
                f"--input-shape applies to ONNX files only; {model_arg!r} is built in with "
                f"input {[(s.name, s.shape) for s in BUILTINS[model_arg].inputs]}. Drop it."
            )
        builtin = BUILTINS[model_arg]
        fp32 = fp32_path(builtin, log)
        specs, source, data = builtin.inputs, "builtin", builtin.eval_data()
    else:
        fp32, specs = cached_fp32(Path(model_arg), input_shapes)
        source = str(Path(model_arg).resolve())
        data = EvalData(synthetic_inputs(specs, 32, seed=0), synthetic_inputs(specs, 64, seed=1), None)
        _check_batch_axis(fp32, specs)

    wanted = ["fp32"] + [p for p in CPU_BUILDABLE if p in precisions and p != "fp32"]
    built = {"fp32": fp32}
    cal_key = cache.sha256_bytes(*(np.ascontiguousarray(v).tobytes() for v in data.calibration.values()))
    var_dir = cache.entry_dir(
        f"{model_name(model_arg)}-variants",
        cache.sha256_bytes(cache.sha256_file(fp32).encode(), variants.RECIPE_VERSION.encode(), cal_key.encode()),
    )
    for precision in wanted[1:]:
        path = var_dir / f"{precision}.onnx"
        if not path.exists():
            log(f"building the {precision} variant of {model_name(model_arg)}")
            tmp = var_dir / f".{precision}.tmp.onnx"
            if precision == "fp16":
                variants.make_fp16(fp32, tmp)
            else:
                variants.make_int8(fp32, tmp, split_batches(data.calibration, 16))
            tmp.replace(path)
        built[precision] = path

    measured = _measure_accuracy(built, data, var_dir / "accuracy.json", log)
    labelled = data.labels is not None
    return PreparedModel(
        name=model_name(model_arg),
        source=source,
        inputs=specs,
        accuracy_metric="top1_accuracy" if labelled else "fidelity",
        accuracy_description=accuracy.TOP1_DESCRIPTION if labelled else accuracy.FIDELITY_DESCRIPTION,
        variants=measured,
    )


def _measure_accuracy(
    paths: dict[str, Path], data: EvalData, record: Path, log: Callable[[str], None]
) -> dict[str, Variant]:
    known = cache.read_json(record) or {}
    out: dict[str, Variant] = {}
    reference = None
    for precision, path in paths.items():
        sha = cache.sha256_file(path)
        hit = known.get(precision)
        if hit and hit.get("sha256") == sha:
            out[precision] = Variant(precision, str(path.resolve()), sha, hit["accuracy"], hit["details"])
            continue
        t0 = time.perf_counter()
        if reference is None:
            reference = accuracy.run_outputs(str(paths["fp32"]), data.evaluation)
        outputs = reference if precision == "fp32" else accuracy.run_outputs(str(path), data.evaluation)
        n = len(outputs)
        if data.labels is not None:
            acc = accuracy.top1_accuracy(outputs, data.labels)
            details: dict[str, float] = {"eval_instances": n}
        else:
            acc = accuracy.fidelity(outputs, reference)
            details = {"eval_instances": n, **accuracy.fidelity_details(outputs, reference)}
        if precision == "int8":
            details["integer_kernel_share"] = variants.integer_kernel_share(path)
        log(f"accuracy of {precision}: {acc:.4f} ({n} inputs, {time.perf_counter() - t0:.1f} s)")
        out[precision] = Variant(precision, str(path.resolve()), sha, acc, details)
        known[precision] = {"sha256": sha, "accuracy": acc, "details": details}
        cache.write_json(record, known)
    return out


def _check_batch_axis(fp32: Path, specs: tuple[InputSpec, ...]) -> None:
    """Run batch 2 once: a model exported with a fixed batch of 1 cannot be batched."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"])
        sess.run(None, synthetic_inputs(specs, 2, seed=0))
    except Exception as exc:
        raise TunerError(
            f"{fp32.name}: the model does not run with a batch of 2 ({type(exc).__name__}: "
            f"{str(exc)[:300]}). tuner needs a dynamic leading batch dimension: re-export the "
            "model with a dynamic batch axis (torch.onnx.export(..., dynamic_shapes=...))."
        ) from None
