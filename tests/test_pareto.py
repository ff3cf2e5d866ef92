"""Non-dominated sorting (maximise throughput, minimise p95 and cost)."""

from tuner.front.pareto import dominates, pareto_indices
from tuner.metrics import DIRECTIONS


def test_dominance_respects_directions() -> None:
    assert dominates([10, 1, 1], [5, 1, 1], DIRECTIONS)       # more throughput, rest equal
    assert not dominates([10, 2, 1], [5, 1, 1], DIRECTIONS)   # trade-off
    assert not dominates([5, 1, 1], [5, 1, 1], DIRECTIONS)    # equal points do not dominate


def test_front() -> None:
    points = [[100, 5, 1.0], [200, 5, 1.0], [50, 1, 2.0], [40, 2, 3.0], [200, 5, 1.0]]
    assert pareto_indices(points, DIRECTIONS) == {1, 2, 4}
