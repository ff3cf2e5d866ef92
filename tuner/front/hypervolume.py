"""Hypervolume of a set of points (all objectives minimised). Pure numpy.

Exact, by slicing along the first objective and summing 2-D areas: O(n^2 log n), plenty
for the few hundred points of a study or a recorded grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuner.metrics import directions_for


def _hv2d_exact(points: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by `points` in 2-D below `ref`."""
    pts = points[np.argsort(points[:, 0], kind="stable")]
    area, prev_y = 0.0, ref[1]
    for x, y in pts:
        if y < prev_y:
            area += (ref[0] - x) * (prev_y - y)
            prev_y = y
    return area


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by `points` ([n, d], minimised, d <= 3) and bounded by `ref` ([d])."""
    pts = np.asarray(points, float)
    ref = np.asarray(ref, float)
    if pts.size == 0:
        return 0.0
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    d = pts.shape[1]
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        return float(_hv2d_exact(pts, ref))
    if d != 3:
        raise ValueError(f"hypervolume supports up to 3 objectives, got {d}")
    order = np.argsort(pts[:, 0])
    pts = pts[order]
    xs = list(pts[:, 0]) + [ref[0]]
    volume = 0.0
    for i in range(len(pts)):
        width = xs[i + 1] - xs[i]
        if width > 0:
            volume += width * _hv2d_exact(pts[: i + 1, 1:], ref[1:])
    return float(volume)


def normalised_minimised(values: np.ndarray, objectives: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map objective values to [0, 1] over [lo, hi] (per objective), 0 = best, all minimised."""
    v = np.asarray(values, float)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = (v - lo) / span
    for j, d in enumerate(directions_for(objectives)):
        if d == "maximize":
            out[:, j] = 1.0 - out[:, j]
    return out


# The reference point of normalised hypervolumes: just beyond the worst value of each objective.
REFERENCE_POINT = 1.1
