"""Finalists: before a study ends, its best measured candidates are measured again,
interleaved (A B C A B C ...), so drift of the machine hits all of them alike. Their reported
metrics become the medians of these re-measurements, with the spread. The first measurement is
left out of the median: it is the one that made the trial a finalist, so it is biased high (the
winner's curse: of many noisy measurements, the best are the luckiest). It stays in the record
as `first_measurement`.

Optuna's stored values stay as first measured (a finished trial cannot change); the
re-measurement is kept in the study's user attribute ``finalists`` and `tuner show`, the
Pareto front it reports and `tuner promote` use it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from tuner.front.selection import DEFAULT_POLICY, measured_front, rank_key
from tuner.metrics import METRIC_KEYS, Metrics, is_feasible
from tuner.record import Interference, TrialRecord
from tuner.runner.base import Runner, TrialFailed
from tuner.study.loop import LoopContext
from tuner.study.outcome import make_outcome
from tuner.study.readback import study_record

NUMERIC = [k for k in METRIC_KEYS if k not in ("estimated", "error_band")]
#: Passes after the first when the medians bring trials not yet re-measured into the top k.
EXTRA_ROUNDS = 2


def pick_finalists(records: Sequence[TrialRecord], k: int, objectives: Sequence[str]) -> list[TrialRecord]:
    """The `k` best trials of the front of measured (not estimated) feasible trials, in the
    default promotion policy's order: what promote would choose from."""
    front = measured_front(records, objectives)
    key = rank_key(DEFAULT_POLICY)
    return sorted(front, key=lambda r: key(r.metrics))[:k]  # type: ignore[arg-type]


def summarise(samples: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, list[float]], float]:
    """Median and [min, max] of each metric, and the throughput's coefficient of variation."""
    median = {k: statistics.median(s[k] for s in samples) for k in NUMERIC}
    spread = {k: [min(s[k] for s in samples), max(s[k] for s in samples)] for k in NUMERIC}
    tputs = [s["throughput_rps"] for s in samples]
    cv = statistics.pstdev(tputs) / statistics.mean(tputs) if len(tputs) > 1 else 0.0
    return median, spread, cv


def remeasure_finalists(ctx: LoopContext, k: int, repeats: int, runner: Runner | None = None,
                        level: str | None = None) -> dict[str, Any]:
    """Re-measure up to `k` finalists `repeats` times each, interleaved, with `runner` measuring at
    `level` (default: the study's runner and level); store and return. The medians of the
    re-measurements are what the front, show and promote use; the first measurement, which
    selected the trial, is not part of them (see the module's docstring).

    A lucky single measurement must not win by luck: when the medians reorder the front so that a
    trial not yet re-measured enters the top `k`, it is re-measured too (at most
    `EXTRA_ROUNDS` more times)."""
    runner = runner or ctx.runner
    level = level or ctx.level
    stored: dict[str, Any] = {}
    for _ in range(1 + EXTRA_ROUNDS):
        known = ctx.study.user_attrs.get("finalists", {})
        finalists = [f for f in pick_finalists(study_record(ctx.study).trials, k, ctx.space.objectives)
                     if known.get(str(f.number), {}).get("level") != level]
        if not finalists or repeats < 1:
            break
        stored = _remeasure(ctx, finalists, repeats, runner, level)
    return stored


def _remeasure(ctx: LoopContext, finalists: list[TrialRecord], repeats: int, runner: Runner,
               level: str) -> dict[str, Any]:
    ctx.log(f"\nre-measuring {len(finalists)} finalist(s) {repeats} more time(s) at the {level} level, interleaved: "
            f"{', '.join('#' + str(f.number) for f in finalists)}")
    # Only the re-measurements count: the first, which selected the trial, is biased high.
    samples: dict[int, list[dict[str, float]]] = {f.number: [] for f in finalists}
    disturbed = {f.number: 0 for f in finalists}
    configs = {f.number: f.config for f in finalists if f.config}
    for r in range(repeats):
        for number, config in configs.items():
            try:
                perf = runner.run(config)
            except TrialFailed as exc:
                ctx.log(f"  finalist #{number} round {r + 1}: FAILED ({exc.reason}); kept out of its median")
                continue
            outcome = make_outcome(config, perf, ctx.model, ctx.prices, ctx.constraints)
            samples[number].append(outcome.metrics.to_dict())
            noise = Interference.from_dict(perf.details.get("interference"))
            disturbed[number] += int(noise is not None and noise.disturbed)
            ctx.log(f"  finalist #{number} round {r + 1}: {outcome.metrics.throughput_rps:,.0f} inf/s, "
                    f"p95 {outcome.metrics.latency_p95_ms:.3f} ms" + (f" ({noise.describe()})" if noise and noise.disturbed
                                                                      else ""))
    stored = dict(ctx.study.user_attrs.get("finalists", {}))
    for number, rows in samples.items():
        if not rows:
            ctx.log(f"  #{number}: no {level} re-measurement succeeded; its figures stay as first measured")
            continue
        median, spread, cv = summarise(rows)
        metrics = Metrics(median["throughput_rps"], median["latency_p50_ms"], median["latency_p95_ms"],
                          median["latency_p99_ms"], median["accuracy"], median["cost_usd_per_million"], estimated=False)
        constraints = ctx.constraints.values(metrics, ctx.model.fp32_accuracy)
        stored[str(number)] = {
            "samples": len(rows),
            "metrics": metrics.to_dict(),
            "spread": spread,
            "throughput_cv": cv,
            "disturbed_samples": disturbed[number],
            "constraints": constraints,
            "feasible": is_feasible(constraints),
            "level": level,
        }
        ctx.log(f"  #{number}: median of {len(rows)} re-measurement(s): {median['throughput_rps']:,.0f} inf/s "
                f"(range {spread['throughput_rps'][0]:,.0f}-{spread['throughput_rps'][1]:,.0f}, cv {cv:.1%}), "
                f"p95 {median['latency_p95_ms']:.3f} ms"
                + (f"; {disturbed[number]} of {len(rows)} measurements DISTURBED by other work" if disturbed[number]
                   else ""))
    ctx.study.set_user_attr("finalists", stored)
    return stored
