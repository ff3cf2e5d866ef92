"""What one model allows of a search space: precisions without a variant, and platforms whose
estimator cannot handle the model's graph, are left out, each with a note saying why.

One platform's failure is not the study's: the study goes on with what is left.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tuner.config import TrialConfig
from tuner.evaluators.gpu import GpuSetup, why_not_precision
from tuner.models.spec import PreparedModel
from tuner.spec.params import CategoricalParam
from tuner.spec.space import SearchSpace


def _with_platforms(space: SearchSpace, updates: dict[str, object]) -> SearchSpace:
    """The space with some platforms' spaces replaced (None: the platform is left out)."""
    return space.model_copy(update={"platforms": space.platforms.model_copy(update=updates)}) if updates else space


def _capped(sp: Any, high: int) -> Any:
    """A platform's space with its batch sizes capped at `high`."""
    return sp.model_copy(update={"batch_size": sp.batch_size.model_copy(update={"high": high})})


def restrict_precisions(space: SearchSpace, platform: str, why_not: Callable[[str], str | None],
                        log: Callable[[str], None], reason_all: str) -> SearchSpace:
    """The space with the precisions of `platform` that `why_not` refuses left out (a note
    each); with none left, the platform is left out (`reason_all`)."""
    sp = space.platform(platform)
    if sp is None:
        return space
    kept = []
    for precision in sp.precision.choices:
        reason = why_not(str(precision))
        if reason:
            log(f"note: {platform} precision {precision} left out: {reason}")
        else:
            kept.append(precision)
    if kept == list(sp.precision.choices):
        return space
    new = sp.model_copy(update={"precision": CategoricalParam(choices=kept)}) if kept else None
    if new is None:
        log(f"note: platform {platform!r} left out: {reason_all}")
    return _with_platforms(space, {platform: new})


def gpu_precisions(space: SearchSpace, gpu: GpuSetup, log: Callable[[str], None]) -> SearchSpace:
    """The space with the gpu precisions the cluster's GPU backend cannot run left out."""
    return restrict_precisions(space, "gpu", lambda p: why_not_precision(gpu, TrialConfig("gpu", 1, p, 1)), log,
                               "none of its precisions can run on this cluster's GPU backend")


def model_precisions(space: SearchSpace, model: PreparedModel, log: Callable[[str], None]) -> SearchSpace:
    """The space with the precisions `model` has no variant of left out, on every platform."""
    def why_not(precision: str) -> str | None:
        if precision in model.variants:
            return None
        if precision in model.left_out:
            return f"{model.name} has no {precision} variant (its reason is in the note above)"
        return f"{model.name} has no {precision} variant built here"

    for platform in space.enabled_platforms():
        if platform == "gpu":
            continue  # gpu variants are built on the GPU nodes (bf16 among them)
        space = restrict_precisions(space, platform, why_not, log,
                                    f"none of its precisions has a variant of {model.name}")
    return space


def model_batch(space: SearchSpace, model: PreparedModel, log: Callable[[str], None]) -> SearchSpace:
    """The space with batch sizes above the model's largest batch left out (a model that fixes
    its batch to 1 is tuned at batch 1)."""
    if model.max_batch is None:
        return space
    updates: dict[str, object] = {}
    for platform in space.enabled_platforms():
        sp = space.platform(platform)
        assert sp is not None
        if sp.batch_size.high <= model.max_batch:
            continue
        if sp.batch_size.low > model.max_batch:
            log(f"note: platform {platform!r} left out: its batch sizes start at {sp.batch_size.low} and "
                f"{model.name} takes at most {model.max_batch}")
            updates[platform] = None
            continue
        log(f"note: {platform} batch sizes above {model.max_batch} left out: {model.name} fixes its batch")
        updates[platform] = _capped(sp, model.max_batch)
    return _with_platforms(space, updates)


def memory_batches(space: SearchSpace, model: PreparedModel, budget_bytes: int | None,
                   log: Callable[[str], None]) -> SearchSpace:
    """The space with CPU batch sizes whose one replica's predicted memory exceeds the trial
    budget left out (tuner.runner.memory_fit), so they are never tried."""
    from tuner.runner.memory_fit import largest_batch

    sp = space.platforms.cpu
    if sp is None or budget_bytes is None or not model.activation_bytes_per_instance:
        return space
    variant_bytes = max(os.path.getsize(v.path) for v in model.variants.values())
    batches = sorted(sp.batch_size.values())
    best = largest_batch(batches, model.activation_bytes_per_instance, variant_bytes, budget_bytes)
    gib = budget_bytes / 2**30
    if best is None:
        log(f"note: platform 'cpu' left out for {model.name}: even batch {batches[0]} is predicted to exceed the "
            f"trial memory budget {gib:.1f} GiB (constraints.trial_memory_gib_max)")
        return _with_platforms(space, {"cpu": None})
    if best >= sp.batch_size.high:
        return space
    log(f"note: cpu batch sizes above {best} left out for {model.name}: predicted memory over the trial budget "
        f"{gib:.1f} GiB ({model.activation_bytes_per_instance / 2**20:.0f} MiB of activations per instance, from "
        "the graph; constraints.trial_memory_gib_max)")
    return _with_platforms(space, {"cpu": _capped(sp, best)})


def fpga_fits(space: SearchSpace, model: PreparedModel, log: Callable[[str], None]) -> SearchSpace:
    """The space with fpga left out when the FPGA cost model cannot analyse the model's graph
    (the note names the node and the reason)."""
    if space.platform("fpga") is None or "int8" not in model.variants:
        return space
    from tuner.evaluators.fpga import analyse

    try:
        with open(model.variants["int8"].path, "rb") as f:
            analyse(f.read(), model.input_shapes(1))
    except Exception as exc:  # any failure of the estimator: the platform goes, the study stays
        log(f"note: platform 'fpga' left out for {model.name}: the FPGA cost model cannot analyse its int8 graph "
            f"({type(exc).__name__}: {str(exc)[:400]})")
        return _with_platforms(space, {"fpga": None})
    return space
