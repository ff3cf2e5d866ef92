"""--model -> PreparedModel: fp32 ONNX, derived precision variants, each with measured accuracy.

Accuracy depends on the precision variant only (not on batch size or replicas), so it is
measured once per variant, on ONNX Runtime's CPU provider, and cached beside the variant.
A precision whose variant cannot be built (or whose outputs are not finite) is left out with
its reason; the others go on. Calibration and accuracy runs take as many instances per call
as the model's activation memory allows (tuner.models.activations), so a large input does not
grow the process without bound. ONNX Runtime's and the quantizer's warnings go to a log file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from tuner.errors import TunerError
from tuner.models import accuracy, cache, data, quiet, variants
from tuner.models.activations import per_instance_bytes
from tuner.models.builtin import BUILTINS, EvalData, fp32_path
from tuner.models.inputs import FIDELITY_KINDS, ModelOptions
from tuner.models.onnx_file import cached_fp32, check_inputs, max_batch
from tuner.models.spec import InputSpec, PreparedModel, Variant
from tuner.models.user_data import load_user_data

# Precisions ONNX Runtime's CPU provider can build and run here; bf16 needs a GPU.
CPU_BUILDABLE = ("fp32", "fp16", "int8")
# Activation memory one calibration call may take. Calibration holds about twice the bytes of
# every tensor of a call (measured on a 48 x 320 text recognizer: 0.39 GiB per instance against
# 0.19 GiB of tensors), so a call takes 1 GiB / (2 x total) instances, at least 1, at most 16.
CALIBRATION_BUDGET_BYTES = 1 * 2**30
EVALUATION_BUDGET_BYTES = 512 * 2**20


def model_name(model_arg: str) -> str:
    """The study-friendly name of a --model argument (built-in name or file stem)."""
    return model_arg if model_arg in BUILTINS else Path(model_arg).stem


def check_model_arg(model_arg: str, opts: ModelOptions) -> None:
    """Refuse a bad --model and its input options in milliseconds, before anything slow starts."""
    if opts.fidelity not in FIDELITY_KINDS:
        raise TunerError(f"Got {opts.fidelity!r} for --fidelity. Choose one of {', '.join(FIDELITY_KINDS)}.")
    if model_arg in BUILTINS:
        if opts.given:
            raise TunerError(
                f"--input-shape, --batch-axis, --fixed-input, --fidelity and --calibration-data apply to ONNX "
                f"files only; {model_arg!r} is built in with input "
                f"{[(s.name, s.shape) for s in BUILTINS[model_arg].inputs]} and its own labelled data. Drop them.")
        return
    check_inputs(Path(model_arg), opts)
    if opts.calibration_data and not Path(opts.calibration_data).exists():
        raise TunerError(f"Got {opts.calibration_data!r} for --calibration-data. It does not exist: pass a folder "
                         "of images or a .npz with one array per model input.")


@dataclass(frozen=True)
class _Source:
    fp32: Path
    source: str
    inputs: tuple[InputSpec, ...]
    data: EvalData
    calibration: str
    notes: tuple[str, ...]


def _source(model_arg: str, opts: ModelOptions, log: Callable[[str], None]) -> _Source:
    if model_arg in BUILTINS:
        check_model_arg(model_arg, opts)
        builtin = BUILTINS[model_arg]
        return _Source(fp32_path(builtin, log), "builtin", builtin.inputs, builtin.eval_data(),
                       "the built-in model's own data", ())
    path = Path(model_arg)
    fp32, specs, notes = cached_fp32(path, opts)
    if opts.calibration_data:
        cal, ev = load_user_data(Path(opts.calibration_data), specs)
        return _Source(fp32, str(path.resolve()), specs, EvalData(cal, ev, None),
                       f"the user's {opts.calibration_data} ({len(next(iter(cal.values())))} calibration, "
                       f"{len(next(iter(ev.values())))} evaluation instances)", tuple(notes))
    desc = "; ".join(f"{s.name}: {data.describe(s)}" for s in specs)
    return _Source(fp32, str(path.resolve()), specs, EvalData(data.synthetic_inputs(specs, 32, seed=0),
                   data.synthetic_inputs(specs, 64, seed=1), None), desc, tuple(notes))


def _per_call(budget: int, per_instance: int, most: int) -> int:
    return max(1, min(most, budget // max(1, per_instance)))


def prepare_model(
    model_arg: str,
    opts: ModelOptions,
    precisions: set[str],
    log: Callable[[str], None] = print,
    floor_ratio: float | None = None,
) -> PreparedModel:
    """Build (or load from the cache) every requested variant and its accuracy.

    Args:
        model_arg: a built-in name (digits-cnn, resnet18) or a path to an .onnx file.
        opts: what the command line says about the file's inputs, fidelity and data.
        precisions: precisions the search may use; fp32 is always prepared (the reference).
        log: where progress lines go.
        floor_ratio: the accuracy constraint (share of fp32), printed beside each figure.
    """
    src = _source(model_arg, opts, log)
    for note in src.notes:
        log(f"note: {note}")
    per_instance, total_per_instance = per_instance_bytes(onnx.load(str(src.fp32)))
    cal_key = cache.sha256_bytes(*(np.ascontiguousarray(v).tobytes() for v in src.data.calibration.values()))
    var_dir = cache.entry_dir(
        f"{model_name(model_arg)}-variants",
        cache.sha256_bytes(cache.sha256_file(src.fp32).encode(), variants.RECIPE_VERSION.encode(), cal_key.encode()),
    )
    batch_cap = None if model_arg in BUILTINS else max_batch(src.fp32)  # 1 for a model that fixes its batch
    largest = batch_cap or 32
    log_file = var_dir / "onnxruntime.log"
    before = quiet.line_count(log_file)
    failures = cache.read_json(var_dir / "failures.json") or {}
    built, left_out = {"fp32": src.fp32}, {}
    with quiet.warnings_to(log_file):
        for precision in [p for p in CPU_BUILDABLE if p in precisions and p != "fp32"]:
            path = var_dir / f"{precision}.onnx"
            if precision in failures:
                left_out[precision] = failures[precision]
                continue
            if not path.exists():
                log(f"building the {precision} variant of {model_name(model_arg)}")
                try:
                    per_call = _per_call(CALIBRATION_BUDGET_BYTES, 2 * total_per_instance, min(16, largest))
                    _build(precision, src, var_dir, per_call)
                except Exception as exc:  # any failure of one variant: leave it out, keep the others
                    failures[precision] = f"building its variant failed ({type(exc).__name__}: {str(exc)[:300]})"
                    cache.write_json(var_dir / "failures.json", failures)
                    left_out[precision] = failures[precision]
                    continue
            built[precision] = path
        measured = _measure_accuracy(built, src.data, var_dir / "accuracy.json", opts.fidelity, log, floor_ratio,
                                     _per_call(EVALUATION_BUDGET_BYTES, per_instance, largest), left_out)
    for precision, why in left_out.items():
        log(f"note: precision {precision} left out for {model_name(model_arg)}: {why}")
    added = quiet.line_count(log_file) - before
    if added > 0:
        log(f"ONNX Runtime and quantizer messages: {added} line(s) in {log_file}")
    if "fp32" not in measured:
        raise TunerError(f"{src.source}: the fp32 model's outputs hold NaN or Inf on the evaluation inputs "
                         f"({src.calibration}); nothing can be compared with it. Give inputs it is meant for with "
                         "--calibration-data.")
    kind = measured["fp32"].details.get("fidelity_kind", "top1")
    labelled = src.data.labels is not None
    return PreparedModel(
        name=model_name(model_arg),
        source=src.source,
        inputs=src.inputs,
        accuracy_metric="top1_accuracy" if labelled else "fidelity",
        accuracy_description=accuracy.TOP1_DESCRIPTION if labelled else accuracy.DESCRIPTIONS[kind],
        variants=measured,
        interface_notes=src.notes,
        left_out=left_out,
        calibration=src.calibration,
        activation_bytes_per_instance=per_instance,
        max_batch=batch_cap,
    )


def _build(precision: str, src: _Source, var_dir: Path, per_call: int) -> None:
    tmp = var_dir / f".{precision}.tmp.onnx"
    if precision == "fp16":
        variants.make_fp16(src.fp32, tmp)
    else:
        variants.make_int8(src.fp32, tmp, data.split_batches(src.data.calibration, per_call))
    tmp.replace(var_dir / f"{precision}.onnx")


def _floor(acc: float, floor_ratio: float | None, measured: dict[str, Variant]) -> str:
    if floor_ratio is None or "fp32" not in measured:
        return ""
    limit = floor_ratio * measured["fp32"].accuracy
    return f"; floor {limit:.4f}" + (": BELOW, its trials will be infeasible" if acc < limit else "")


def _measure_accuracy(paths: dict[str, Path], ev: EvalData, record: Path, fidelity: str, log: Callable[[str], None],
                      floor_ratio: float | None, per_call: int, left_out: dict[str, str]) -> dict[str, Variant]:
    known = cache.read_json(record) or {}
    out: dict[str, Variant] = {}
    reference: accuracy.Outputs | None = None
    kind = "top1" if ev.labels is not None else fidelity
    for precision, path in paths.items():
        sha = cache.sha256_file(path)
        hit = known.get(precision)
        if hit and hit.get("sha256") == sha and hit.get("fidelity_option") == kind:
            out[precision] = Variant(precision, str(path.resolve()), sha, hit["accuracy"], hit["details"])
            name = "top-1 accuracy" if ev.labels is not None else f"fidelity ({hit['details'].get('fidelity_kind')})"
            log(f"{name} of {precision}: {hit['accuracy']:.4f} (cached{_floor(hit['accuracy'], floor_ratio, out)})")
            continue
        t0 = time.perf_counter()
        if reference is None:
            reference = accuracy.run_outputs(str(paths["fp32"]), ev.evaluation, per_call)
        try:
            outputs = reference if precision == "fp32" else accuracy.run_outputs(str(path), ev.evaluation, per_call)
        except Exception as exc:  # a variant ONNX Runtime cannot load or run: leave it out, keep the others
            left_out[precision] = f"its variant does not run ({type(exc).__name__}: {str(exc)[:300]})"
            continue
        if not all(np.isfinite(o).all() for o in outputs):
            if precision == "fp32":
                break  # no reference: prepare_model says so
            left_out[precision] = "its outputs hold NaN or Inf on the evaluation inputs"
            continue
        n = len(outputs[0])
        details: dict = {"eval_instances": n, "fidelity_option": kind}
        if ev.labels is not None:
            acc, name = accuracy.top1_accuracy(accuracy.flat(outputs), ev.labels), "top-1 accuracy"
        else:
            chosen = accuracy.auto_kind(reference) if kind == "auto" else kind
            if chosen == "sequence" and not any(o.ndim == 3 for o in reference):
                raise TunerError(f"Got --fidelity sequence, but no output is [T, C] per instance (shapes "
                                 f"{[list(o.shape[1:]) for o in reference]}). Use centred-l2 or cosine.")
            acc, name = accuracy.fidelity_of(chosen, outputs, reference), f"fidelity ({chosen})"
            details.update({"fidelity_kind": chosen, **accuracy.fidelity_details(accuracy.flat(outputs),
                                                                                  accuracy.flat(reference))})
        if precision == "int8":
            details["integer_kernel_share"] = variants.integer_kernel_share(path)
        log(f"{name} of {precision}: {acc:.4f} ({n} inputs, {time.perf_counter() - t0:.1f} s"
            f"{_floor(acc, floor_ratio, out)})")
        out[precision] = Variant(precision, str(path.resolve()), sha, acc, details)
        known[precision] = {"sha256": sha, "accuracy": acc, "details": details, "fidelity_option": kind}
        cache.write_json(record, known)
    return out
