"""Cost per million inferences, constraints, percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.metrics import Constraints, Metrics, is_feasible, latency_percentiles_ms
from tuner.prices import load_prices
from tuner.spec.space import PriceOverride


def test_every_shipped_price_names_its_source() -> None:
    table = load_prices()
    assert {"cpu.vcpu", "fpga.aws-f1"} <= set(table.rows)
    for key, row in table.rows.items():
        assert row.usd_per_hour > 0 and len(row.source) > 20, key


def test_cpu_cost_counts_every_vcpu() -> None:
    table = load_prices()
    cfg = TrialConfig("cpu", 8, "int8", replicas=2, threads_per_replica=2)
    # 4 vCPU x $0.0425/h at 1000 inf/s -> 0.17 / 3.6e6 * 1e6
    assert table.cost_usd_per_million(cfg, 1000.0) == pytest.approx(0.17 / 3.6, rel=1e-9)


def test_fpga_pays_for_the_whole_board_and_overrides_apply() -> None:
    table = load_prices({"fpga.aws-f1": PriceOverride(usd_per_hour=3.6, source="test quote")})
    one = TrialConfig("fpga", 8, "int8", 1, 1, "aws-f1")
    two = TrialConfig("fpga", 8, "int8", 2, 1, "aws-f1")
    assert table.usd_per_hour(one) == table.usd_per_hour(two) == 3.6
    assert table.cost_usd_per_million(one, 1000.0) == pytest.approx(1.0)
    assert "override" in table.row("fpga.aws-f1").source


def test_missing_price_says_how_to_add_one() -> None:
    with pytest.raises(TunerError, match=r"No price for 'fpga.zcu104'.*prices:"):
        load_prices().usd_per_hour(TrialConfig("fpga", 1, "int8", 1, 1, "zcu104"))


def test_constraints_accuracy_relative_to_fp32_and_slo() -> None:
    m = Metrics(100, 1, 5, 9, 0.975, 0.1, False)
    c = Constraints(accuracy_min_ratio=0.99, latency_p95_ms_max=4.0)
    v = c.values(m, fp32_accuracy=0.98)
    assert v["accuracy"] == pytest.approx(0.99 * 0.98 - 0.975)  # 0.9702 - 0.975 < 0: ok
    assert v["latency_p95_ms"] == pytest.approx(1.0)            # misses the SLO by 1 ms
    assert not is_feasible(v)
    assert is_feasible(Constraints().values(m, 0.98))


def test_percentiles_are_observed_values_in_ms() -> None:
    lat = np.arange(1, 101) / 1000.0  # 1..100 ms
    p50, p95, p99 = latency_percentiles_ms(lat)
    assert (p50, p95, p99) == (pytest.approx(51.0), pytest.approx(96.0), pytest.approx(100.0))
