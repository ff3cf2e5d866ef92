"""The samplers `--sampler` offers. Every one proposes only configurations the cluster can
run, because they all go through `tuner.search.suggest.suggest`.

- ``default``: tuner's own strategy (see tuner/search/structured.py), chosen by offline replay
  (experiments/replay.py; figures in the README).
- ``tpe``: multivariate TPE with a constant liar (for trials in flight).
- ``gp``: Optuna's GP sampler. ``nsga2``: NSGA-II. ``random``: uniform random.
- ``grid``: every configuration once (Optuna's brute-force sampler walks the conditional grid).
All read the constraints set with `trial.set_constraint`.
"""

from __future__ import annotations

import optuna

from tuner.errors import TunerError
from tuner.search.context import SamplerContext
from tuner.search.structured import StructuredSampler

SAMPLERS = ("default", "tpe", "gp", "nsga2", "random", "grid")


def make_sampler(name: str, seed: int | None, context: SamplerContext | None = None) -> optuna.samplers.BaseSampler:
    if name == "default":
        if context is None:
            raise ValueError("the default sampler needs a SamplerContext")
        return StructuredSampler(context, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.BruteForceSampler(seed=seed)
    raise TunerError(f"Got {name!r} for --sampler. Choose one of: {', '.join(SAMPLERS)}.")
