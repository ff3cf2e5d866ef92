"""Which evaluator evaluates each platform: the one table the runners read (no if-chain over
platforms anywhere else). A platform missing here cannot be run, and says so."""

from __future__ import annotations

from tuner.evaluators.base import Evaluator
from tuner.evaluators.cpu import CPU
from tuner.evaluators.fpga import FPGA

#: gpu has a measured bench (tuner.evaluators.gpu.bench) but no dispatch yet: issue 14.
EVALUATORS: dict[str, Evaluator] = {e.platform: e for e in (CPU, FPGA)}


def evaluator_for(platform: str) -> Evaluator | None:
    """The evaluator of `platform`, or None when no evaluator is registered for it."""
    return EVALUATORS.get(platform)
