"""tuner's default sampler: search that uses what is known about the space.

1. Never propose what is known before measuring: precisions below the accuracy floor (the
   accuracy of each variant is measured before the study), and configurations already
   measured or in flight.
2. FPGA configurations are priced by the cost model, which costs nothing to ask: their
   objectives are known exactly before any trial.
3. CPU speed follows a structural model (tuner/search/surrogate.py), fitted on what was measured;
   GPU speed the same model, fitted on the GPU trials alone. Its posterior (tuner/search/posterior.py:
   a Gaussian process on the model's leave-one-out errors) says how far to trust each prediction.
4. Start from one balanced configuration: the middle batch size on every core, then the smallest
   batch size on the same layout and precision (the two points that tell the model's fixed cost
   per call from its cost per instance); and, when the cluster runs gpu trials, one on the GPU
   (the middle batch size, one replica). A configuration that could not run (out of memory, a
   layout the cluster cannot hold) rules out those that need at least as much: the same
   precision with at least its batch size, replicas and threads per replica.
5. Then propose the configuration with the largest hypervolume improvement over the
   feasible front found so far, predicted optimistically: at the posterior's upper bound
   (its 84.1% quantile of log throughput, which a normal puts `OPTIMISM_SD` standard deviations
   above the mean; the posterior's Student t further out), so unexplored regions are tried when
   they might matter and not otherwise. The bound is on the true value, without the noise of a
   new measurement (`ACQUIRE_NOISE`): hoping for a lucky measurement of a configuration already
   well predicted buys nothing. With a p95 SLO,
   first the configuration predicted (optimistically) to meet it most cheaply, while one may
   still beat the cheapest found: that is the configuration promote will choose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from tuner.config import TrialConfig
from tuner.front.hypervolume import hypervolume, normalised_minimised
from tuner.metrics import OBJECTIVES
from tuner.search.context import SamplerContext
from tuner.search.posterior import Posterior
from tuner.search.suggest import enumerate_configs, params_for, suggest
from tuner.search.surrogate import Observation

OBJ = list(OBJECTIVES)
#: Platforms whose speed is measured (and modelled); the others' figures are estimates.
MEASURED = ("cpu", "gpu")
#: How optimistic the acquisition is: the posterior's quantile that lies this many standard
#: deviations above the mean under a normal (84.1%); a Student t posterior puts it further out.
OPTIMISM_SD = 1.0
OPTIMISM_QUANTILE = float(stats.norm.cdf(OPTIMISM_SD))
#: Whether that spread includes the measurement noise the posterior fitted (no: the true value's).
ACQUIRE_NOISE = False


class StructuredSampler(optuna.samplers.BaseSampler):
    def __init__(self, context: SamplerContext, seed: int | None = None) -> None:
        self.ctx = context
        self._rng = np.random.default_rng(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}
        floor = context.accuracy_floor_ratio * context.fp32_accuracy
        grid = enumerate_configs(context.space, context.cluster)
        ok = {p for p, a in context.accuracy.items() if a >= floor} or {"fp32"}
        self.candidates = [c for c in grid if not context.accuracy or c.precision in ok]

    # Optuna's sampler interface: the whole configuration is chosen at the first parameter.
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if trial.number not in self._plans:
            config = self.choose(study)
            self._plans[trial.number] = params_for(self.ctx.space, config) if config else {}
        plan = self._plans[trial.number]
        if param_name in plan and param_distribution._contains(param_distribution.to_internal_repr(plan[param_name])):
            return plan[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._plans.pop(trial.number, None)

    # The strategy.
    def _config_of(self, trial: FrozenTrial) -> TrialConfig | None:
        try:
            return suggest(self.ctx.space, optuna.trial.FixedTrial(trial.params), self.ctx.cluster)
        except Exception:
            return None

    def _history(self, study: optuna.Study) -> tuple[set[TrialConfig], list[tuple[TrialConfig, dict[str, float], bool]]]:
        taken, done = set(), []
        names = study.metric_names or OBJ
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)):
            c = self._config_of(t) if t.params else None
            if c is None:
                continue
            taken.add(c)
            if t.state != TrialState.COMPLETE:
                continue
            known = {k: t.user_attrs.get(k) for k in OBJ}
            for k, v in zip(names, t.values or []):
                if known.get(k) is None:
                    known[k] = v
            metrics = {k: float(v) for k, v in known.items() if v is not None}
            if len(metrics) < len(OBJ):
                continue
            feasible = all(v <= 0 for v in t.constraints.values())
            done.append((c, metrics, feasible))
        return taken, done

    def _not_runnable(self, study: optuna.Study) -> list[TrialConfig]:
        """The configurations tried that could not run (the study's `runnable` constraint)."""
        failed = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            c = self._config_of(t) if t.params and t.constraints.get("runnable", 0.0) > 0 else None
            if c is not None:
                failed.append(c)
        return failed

    def _predict(self, models: dict[str, Posterior], c: TrialConfig) -> tuple[dict[str, float], float] | None:
        """Predicted objectives at the posterior mean, and the optimistic factor (1 + u)."""
        model = models.get(c.platform)
        if model is None:
            est = self.ctx.estimates.get(c)
            return (dict(est), 0.0) if est else None
        if not model.model.obs:
            return None  # no measurement of this platform yet to predict from (its seed comes first)
        tput, p95, sd = model.predict(c, noise=ACQUIRE_NOISE)
        u = float(np.expm1(model.quantile_sd(OPTIMISM_QUANTILE) * sd))
        cost = self.ctx.usd_per_hour(c) / (tput * 3600) * 1e6 if self.ctx.usd_per_hour else 1.0 / tput
        return {"throughput_rps": tput, "latency_p95_ms": p95, "cost_usd_per_million": cost}, u

    def choose(self, study: optuna.Study) -> TrialConfig | None:
        taken, done = self._history(study)
        failed = self._not_runnable(study)
        free = [c for c in self.candidates if c not in taken and not any(_needs_as_much(c, f) for f in failed)]
        if not free:
            return None
        seeds = [c for c in self._corner_seeds() if c in free]
        if seeds:
            return seeds[0]
        observed = [Observation(c, m["throughput_rps"], m["latency_p95_ms"]) for c, m, ok in done if ok is not None]
        models = {p: Posterior(observed, platform=p) for p in MEASURED}
        found = [m for c, m, ok in done if ok]
        # A measured candidate competes with what was measured, an estimated one with the
        # estimates: estimates (an FPGA board nobody attached) must not starve the search of the
        # measurements a deployment needs.
        kinds = {id(m): c in self.ctx.estimates for c, m, ok in done if ok}
        scored = []
        for c in free:
            pred = self._predict(models, c)
            if pred is None:
                continue
            m, u = pred
            optimistic = {"throughput_rps": m["throughput_rps"] * (1 + u),
                          "latency_p95_ms": m["latency_p95_ms"] / (1 + u),
                          "cost_usd_per_million": m["cost_usd_per_million"] / (1 + u)}
            if self.ctx.slo_ms is not None and optimistic["latency_p95_ms"] > self.ctx.slo_ms:
                continue
            scored.append((c, optimistic, u))
        if not scored:
            return free[int(self._rng.integers(len(free)))]
        if self.ctx.slo_ms is not None:
            # With an SLO the usual goal is the cheapest configuration meeting it (what
            # promote picks): go for the candidate that may beat the cheapest found so far.
            best = min((m["cost_usd_per_million"] for m in found), default=float("inf"))
            cheaper = [s for s in scored if s[1]["cost_usd_per_million"] < best * 0.99]
            if cheaper:
                return min(cheaper, key=lambda s: s[1]["cost_usd_per_million"])[0]
        gains = self._hv_gains(found, [s[1] for s in scored], [kinds[id(m)] for m in found],
                               [s[0] in self.ctx.estimates for s in scored])
        best = max(range(len(scored)), key=lambda i: (gains[i], scored[i][2], -i))
        return scored[best][0]

    def _hv_gains(self, found: list[dict[str, float]], cands: list[dict[str, float]], found_estimated: list[bool],
                  cand_estimated: list[bool]) -> list[float]:
        """Each candidate's hypervolume gain over the found points of its own kind (measured or
        estimated), all normalised over every point."""
        names = list(self.ctx.space.objectives)
        allv = np.array([[m[k] for k in names] for m in found + cands])
        lo, hi = allv.min(0), allv.max(0)
        ref = np.full(len(names), 1.1)
        found_pts = (normalised_minimised(np.array([[m[k] for k in names] for m in found]), names, lo, hi)
                     if found else np.empty((0, len(names))))
        groups = {kind: found_pts[[i for i, e in enumerate(found_estimated) if e == kind]] for kind in (False, True)}
        base = {kind: hypervolume(pts, ref) if len(pts) else 0.0 for kind, pts in groups.items()}
        cand_pts = normalised_minimised(np.array([[m[k] for k in names] for m in cands]), names, lo, hi)
        return [hypervolume(np.vstack([groups[e], p[None]]), ref) - base[e] for p, e in zip(cand_pts, cand_estimated)]

    def _corner_seeds(self) -> list[TrialConfig]:
        """One balanced start per measured platform: on the CPU the middle batch size (geometric)
        on every core, one thread per replica, in the reference precision; on the GPU the middle
        batch size on one replica (its speed model needs one measurement to start from). In
        replays of recorded grids the CPU start alone holds most of the front's hypervolume (large
        batches buy throughput and cost, small ones latency); seeding every precision's corners
        first cost more trials than it saved.

        On the CPU the start is followed by the smallest batch size on the same layout and
        precision. One batch size cannot tell a call's fixed cost a from its cost per instance b
        (the fit then sits at its prior, a = b, and predicts batch 1 at half speed). With two
        batch sizes the determinant of the information about (log a, log b) is proportional to
        (w(B) - w(B_mid))^2, w(B) = b B / (a + b B) the share of a call spent on instances: the
        smallest batch maximises it unless the fixed cost exceeds the cost of sqrt(B_min x B_max)
        instances (at the prior's a = b and batches 1-256: 0.44 for batch 1, 0.06 for 256).
        """
        seeds = []
        for platform in MEASURED:
            group = [c for c in self.candidates if c.platform == platform and c.threads_per_replica == 1]
            if not group:
                continue
            batches = sorted({c.batch_size for c in group})
            mid = batches[len(batches) // 2]
            replicas = max(c.replicas for c in group) if platform == "cpu" else min(c.replicas for c in group)
            precision = min({c.precision for c in group}, key=lambda p: ("fp32", "fp16", "bf16", "int8").index(p))
            seeds.append(TrialConfig(platform, mid, precision, replicas, 1))
            if platform == "cpu" and batches[0] != mid:
                seeds.append(TrialConfig(platform, batches[0], precision, replicas, 1))
        return seeds


def _needs_as_much(c: TrialConfig, failed: TrialConfig) -> bool:
    """Whether `c` needs at least the memory and cores of `failed`: a trial's memory grows with
    its batch size and replicas (tuner/runner/memory_fit.py), its cores with replicas and threads."""
    return (c.platform == failed.platform and c.device == failed.device and c.precision == failed.precision
            and c.batch_size >= failed.batch_size and c.replicas >= failed.replicas
            and c.threads_per_replica >= failed.threads_per_replica)
