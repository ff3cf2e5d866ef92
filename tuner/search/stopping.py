"""When to stop asking for trials, besides --trials: a deadline (--timeout-s) and a stall of
the feasible Pareto front's hypervolume for K trials (--patience K)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner.front.hypervolume import REFERENCE_POINT, hypervolume, normalised_minimised


@dataclass
class Stopper:
    """Tracks the stopping rules; `reason()` says why to stop, or None."""

    objectives: Sequence[str]
    timeout_s: float | None = None
    patience: int | None = None
    _start: float = field(default_factory=time.monotonic)
    _points: list[list[float]] = field(default_factory=list)
    _stalled: int = 0

    def observe(self, values: dict[str, float] | None, feasible: bool) -> None:
        """Record one finished trial (values None or infeasible: no improvement)."""
        if values is None or not feasible:
            self._stalled += 1
            return
        new = [values[k] for k in self.objectives]
        before = self._points
        after = before + [new]
        allv = np.array(after, float)
        lo, hi = allv.min(0), allv.max(0)
        ref = np.full(len(self.objectives), REFERENCE_POINT)
        hv_after = hypervolume(normalised_minimised(allv, self.objectives, lo, hi), ref)
        hv_before = (hypervolume(normalised_minimised(np.array(before, float), self.objectives, lo, hi), ref)
                     if before else 0.0)
        self._points = after
        self._stalled = 0 if hv_after > hv_before * (1 + 1e-9) else self._stalled + 1

    def reason(self) -> str | None:
        if self.timeout_s is not None and time.monotonic() - self._start >= self.timeout_s:
            return f"--timeout-s {self.timeout_s:g} reached"
        if self.patience is not None and self._stalled >= self.patience:
            return f"the feasible front's hypervolume has not improved for {self._stalled} trials (--patience {self.patience})"
        return None
