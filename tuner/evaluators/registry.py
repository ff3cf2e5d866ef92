"""Which evaluator evaluates each platform at each measurement level: the one table the runners
read (no if-chain over platforms anywhere else). A platform missing here cannot be run, and says so.

Most evaluators are fixed; gpu depends on what the cluster's GPU nodes have (`GpuSetup`, probed
when tuner connects), so it is built from that setup.
"""

from __future__ import annotations

from collections.abc import Callable

from tuner.evaluators.base import Evaluator
from tuner.evaluators.cpu import CPU
from tuner.evaluators.fpga import FPGA
from tuner.evaluators.gpu import GpuSetup, gpu_evaluator
from tuner.evaluators.served import ServedEvaluator

EVALUATORS: dict[str, Evaluator] = {e.platform: e for e in (CPU, FPGA)}
#: Evaluators built from the cluster's probed GPU setup (None there: the platform cannot run).
FROM_SETUP: dict[str, Callable[[GpuSetup], Evaluator]] = {"gpu": gpu_evaluator}
#: Platforms that can also be measured through the Ray Serve application (the served level).
SERVED: dict[str, ServedEvaluator] = {p: ServedEvaluator(p) for p in ("cpu", "gpu")}
LEVELS = ("served", "engine")


def evaluator_for(platform: str, level: str = "engine", gpu: GpuSetup | None = None
                  ) -> Evaluator | ServedEvaluator | None:
    """The evaluator of `platform` at `level` ("served" or "engine") on a cluster whose GPU setup
    is `gpu`; a platform that is only estimated (fpga) has one evaluator whatever the level.
    None when none can run it here."""
    if platform in FROM_SETUP and gpu is None:
        return None
    if level == "served" and platform in SERVED:
        return SERVED[platform]
    if platform in FROM_SETUP:
        assert gpu is not None
        return FROM_SETUP[platform](gpu)
    return EVALUATORS.get(platform)
