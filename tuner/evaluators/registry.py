"""Which evaluator evaluates each platform at each measurement level: the one table the runners
read (no if-chain over platforms anywhere else). A platform missing here cannot be run, and says so."""

from __future__ import annotations

from tuner.evaluators.base import Evaluator
from tuner.evaluators.cpu import CPU
from tuner.evaluators.fpga import FPGA
from tuner.evaluators.served import ServedEvaluator

#: gpu has a measured bench (tuner.evaluators.gpu.bench) but no dispatch yet: issue 14.
EVALUATORS: dict[str, Evaluator] = {e.platform: e for e in (CPU, FPGA)}
#: Platforms that can also be measured through the Ray Serve application (the served level).
SERVED: dict[str, ServedEvaluator] = {"cpu": ServedEvaluator("cpu")}
LEVELS = ("served", "engine")


def evaluator_for(platform: str, level: str = "engine") -> Evaluator | ServedEvaluator | None:
    """The evaluator of `platform` at `level` ("served" or "engine"); a platform that is only
    estimated (fpga) has one evaluator whatever the level. None when none is registered."""
    if level == "served" and platform in SERVED:
        return SERVED[platform]
    return EVALUATORS.get(platform)
