"""Selection policies: pure choice among feasible Pareto trials, servable platforms only."""

from __future__ import annotations

import pytest

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.front.selection import choose, explicit
from tuner.metrics import Metrics
from tuner.record import TrialRecord


def rec(number, platform, cost, tput, p95, pareto=True, feasible=True) -> TrialRecord:
    config = TrialConfig(platform, 8, "int8", 1, 1, "zcu104" if platform == "fpga" else None)
    metrics = Metrics(tput, p95 / 2, p95, p95 * 1.5, 0.98, cost, platform == "fpga")
    return TrialRecord(number, "COMPLETE", config, metrics, feasible, pareto)


RECORDS = [
    rec(0, "cpu", 0.50, 1000, 2.0),
    rec(1, "cpu", 0.20, 3000, 9.0),
    rec(2, "fpga", 0.05, 9000, 1.0),
    rec(3, "cpu", 0.60, 900, 2.5, pareto=False),         # dominated by #0
    rec(4, "cpu", 0.01, 9999, 0.5, feasible=False),      # infeasible
]


def test_cheapest_skips_unservable_and_reports_it() -> None:
    c = choose(RECORDS, "cheapest", {"cpu"})
    assert c.trial.number == 1
    assert c.better_unservable is not None and c.better_unservable.number == 2
    assert [r.number for r in c.runners_up] == [0]


def test_lowest_latency_and_fastest_policies() -> None:
    assert choose(RECORDS, "lowest-latency", {"cpu"}).trial.number == 0
    assert choose(RECORDS, "fastest", {"cpu"}).trial.number == 1
    assert choose(RECORDS, "cheapest", {"cpu", "fpga"}).trial.number == 2


def test_no_feasible_front_is_a_clear_error() -> None:
    with pytest.raises(TunerError, match="no feasible Pareto-optimal trial"):
        choose([rec(0, "cpu", 1, 1, 1, feasible=False)], "cheapest", {"cpu"})


def test_explicit_fpga_trial_names_the_best_servable_one() -> None:
    with pytest.raises(TunerError, match=r"cannot be served.*--trial 1"):
        explicit(RECORDS, 2, {"cpu"})
    assert explicit(RECORDS, 3, {"cpu"}).trial.number == 3


def test_unknown_policy_lists_known_ones() -> None:
    with pytest.raises(TunerError, match="cheapest"):
        choose(RECORDS, "best", {"cpu"})


def test_cheapest_respects_an_slo_and_fastest_a_budget() -> None:
    assert choose(RECORDS, "cheapest", {"cpu"}, slo_ms=5.0).trial.number == 0   # #1 misses 5 ms
    assert choose(RECORDS, "fastest", {"cpu"}, max_cost=0.3).trial.number == 1
    with pytest.raises(TunerError, match="No feasible Pareto trial meets"):
        choose(RECORDS, "fastest", {"cpu"}, max_cost=0.01)


def test_the_reason_names_the_slo_only_when_one_is_set() -> None:
    unset = choose(RECORDS, "cheapest", {"cpu"}).reason
    assert "(no p95 SLO set)" in unset and "meeting the p95 SLO" not in unset
    assert "meeting the p95 SLO" in choose(RECORDS, "cheapest", {"cpu"}, slo_ms=5.0).reason


def test_knee_picks_the_balanced_point() -> None:
    recs = [rec(0, "cpu", 1.0, 1000, 1.0), rec(1, "cpu", 0.1, 10, 100.0), rec(2, "cpu", 0.4, 700, 20.0)]
    assert choose(recs, "knee", {"cpu"}).trial.number == 2


def test_a_servable_trial_dominated_only_by_an_estimate_is_chosen_and_the_estimate_reported() -> None:
    """Served CPU figures can all sit behind an FPGA estimate: promote still deploys the best
    servable trial (its own front) and names the estimate that ranks first."""
    recs = [rec(0, "fpga", 0.01, 90000, 0.5), rec(1, "cpu", 0.20, 3000, 9.0, pareto=False),
            rec(2, "cpu", 0.40, 2500, 12.0, pareto=False)]
    c = choose(recs, "cheapest", {"cpu"})
    assert c.trial.number == 1 and c.runners_up == []  # #2 is dominated by #1 among cpu trials
    assert c.better_unservable is not None and c.better_unservable.number == 0


def test_engine_figures_never_stand_beside_served_ones() -> None:
    """An engine-level trial (bench figures) would dominate every served one; once a study holds
    served figures its front and promote's choice are over served trials only."""
    from dataclasses import replace

    from tuner.front.selection import measured_front
    from tuner.study.readback import mark_pareto

    objectives = ["throughput_rps", "latency_p95_ms", "cost_usd_per_million"]
    engine = replace(rec(0, "cpu", 0.01, 90000, 0.1, pareto=False), level="engine")
    served = [replace(rec(1, "cpu", 0.50, 2000, 4.0, pareto=False), level="served"),
              replace(rec(2, "cpu", 0.40, 2500, 5.0, pareto=False), level="served")]
    estimate = replace(rec(3, "fpga", 0.05, 9000, 10.0, pareto=False), level="estimate")  # slower: no one dominates
    marked = mark_pareto([engine, *served, estimate], objectives)
    assert [r.number for r in marked if r.pareto] == [1, 2, 3]
    assert [r.number for r in measured_front(marked, objectives)] == [1, 2]
    assert choose(marked, "fastest", {"cpu"}, objectives=objectives).trial.number == 2
    # Without served figures, the engine level is the study's level.
    assert [r.number for r in mark_pareto([engine, estimate], objectives) if r.pareto] == [0]


def test_with_re_measured_finalists_a_trial_measured_once_is_reported_not_chosen() -> None:
    """Digits-cnn today: #8 measured once at 2,688 inf/s, finalist #12's median 2,535; served
    afresh #8 gave 1,822-2,370 inf/s. Promote chooses among what was measured repeatedly."""
    from dataclasses import replace

    from tuner.record import Remeasured
    once = rec(8, "cpu", 0.00439, 2688, 36.6)
    finalist = replace(rec(12, "cpu", 0.00466, 2535, 19.6), remeasured=Remeasured(3, {}, 0.18, None))
    c = choose([once, finalist], "cheapest", {"cpu"})
    assert c.trial.number == 12 and c.better_measured_once is once
    assert "among the re-measured finalists" in c.reason and [r.number for r in c.runners_up] == [8]
    # A study without finalists (--finalists 0) chooses among everything.
    c = choose([once, rec(12, "cpu", 0.00466, 2535, 19.6)], "cheapest", {"cpu"})
    assert c.trial.number == 8 and c.better_measured_once is None
