"""Non-dominated sorting of trials. Pure: vectors in, indices out.

Optuna's `best_trials` is the front of the values told to the sampler. tuner reports the
front of its *reported* metrics instead, which differ for finalists (medians of repeated
measurements), so it computes the front itself.
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one."""
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def pareto_indices(points: Sequence[Sequence[float]], directions: Sequence[str]) -> set[int]:
    """Indices of the points no other point dominates (O(n^2); studies have few trials)."""
    return {
        i for i, p in enumerate(points)
        if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)
    }
