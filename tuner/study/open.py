"""Open a study for `tuner tune`: create it or continue it (same objectives, same model build),
warm-start it from an earlier study, and record each run's facts on it."""

from __future__ import annotations

import optuna

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.metrics import directions_for
from tuner.models.spec import PreparedModel
from tuner.prices import PriceTable
from tuner.search.suggest import enumerate_configs, params_for
from tuner.spec.measurement import LoadSpec
from tuner.spec.space import SearchSpace
from tuner.study.companions import COMPANION_ATTR, is_companion
from tuner.study.loop import LoopStats
from tuner.study.readback import study_record
from tuner.study.storage import DEFAULT_STORAGE


def open_study(name: str, storage_url: str | None, storage: optuna.storages.BaseStorage, model: PreparedModel,
               space: SearchSpace, prices: PriceTable, load: LoadSpec,
               sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the study, or continue it when its objectives and model build match."""
    objectives = list(space.objectives)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions_for(objectives),
                                sampler=sampler, load_if_exists=True)
    if is_companion(study.user_attrs):
        raise TunerError(
            f"Got {name!r} for --study. That study is one tuner keeps for the dashboard beside the search study "
            f"{study.user_attrs[COMPANION_ATTR]!r}, and is rebuilt from it. Pass --study "
            f"{study.user_attrs[COMPANION_ATTR]} to continue the search, or a new name.")
    if study.metric_names and study.metric_names != objectives:
        raise TunerError(
            f"Study {name!r} optimises {study.metric_names}, but the search space asks for {objectives}. "
            "Use the same objectives to continue it, or pass --study NEW_NAME.")
    known = study.user_attrs.get("model")
    if known is None:
        study.set_metric_names([str(o) for o in objectives])
        study.set_user_attr("model", model.to_dict())
        study.set_user_attr("fp32_accuracy", model.fp32_accuracy)
        study.set_user_attr("accuracy_metric", model.accuracy_metric)
        study.set_user_attr("search_space", space.model_dump(mode="json", exclude_none=True))
        study.set_user_attr("prices", prices.to_dict())
        study.set_user_attr("load", load.to_dict())
    else:
        old = {k: v["sha256"] for k, v in known["variants"].items()}
        new = {k: v.sha256 for k, v in model.variants.items()}
        if any(old.get(k) != new[k] for k in old if k in new):
            raise TunerError(
                f"Study {name!r} in {storage_url or DEFAULT_STORAGE} was measured on a different build "
                f"of model {model.name!r} (its ONNX files differ). Its trials would not be comparable: "
                "pass --study NEW_NAME to start a new study.")
        if set(new) - set(old):
            merged = dict(known)
            merged["variants"] = {**known["variants"], **model.to_dict()["variants"]}
            study.set_user_attr("model", merged)
    optuna.storages.fail_stale_trials(study)  # trials a killed driver left RUNNING
    return study


def warm_start(study: optuna.Study, source: str, storage: str | None, space: SearchSpace, info, log) -> int:
    """Enqueue the feasible Pareto configurations of an earlier study (new model version, new
    prices, new cluster): measured again here, first. Returns how many were enqueued."""
    from tuner.study.storage import load_study

    earlier = study_record(load_study(source, storage))
    grid = set(enumerate_configs(space, info))
    picked: list[TrialConfig] = []
    for r in earlier.front:
        if r.config in grid and r.config not in picked:
            picked.append(r.config)
    for config in picked:
        study.enqueue_trial(params_for(space, config), skip_if_exists=True)
    log(f"warm start: {len(picked)} Pareto configuration(s) of study {source!r} enqueued first"
        f"{'' if picked else ' (none fits this search space and cluster)'}")
    return len(picked)


def record_run(study: optuna.Study, started: str, wall_s: float, peak_gib: float, parallel: int,
               stats: LoopStats, host_before: dict | None = None) -> None:
    """Append this run's facts to the study attribute ``runs`` (`host_before`: how busy the
    machine was before the run, `tuner.runner.host_load.HostLoad.to_dict`)."""
    runs = list(study.user_attrs.get("runs", []))
    runs.append({"started": started, "wall_s": round(wall_s, 1), "peak_memory_gib": round(peak_gib, 3),
                 "parallel": parallel, "measured": stats.measured, "reused": stats.reused,
                 "not_runnable": stats.not_runnable, "failed": stats.failed, "host_before": host_before,
                 "disturbed_trials": list(stats.disturbed)})
    study.set_user_attr("runs", runs)
