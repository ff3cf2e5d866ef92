"""How the replicas of a gpu trial share the cluster's GPUs (the one rule placement, the Serve
config and prices all follow).

With R replicas and G GPUs, each GPU holds at most k = ceil(R / G) replicas and a replica asks
Ray for num_gpus = 1/k (rounded down to Ray's 1e-4 resource grain). So R <= G gives one GPU each
(num_gpus 1), and R replicas on one GPU share it (num_gpus 1/R). A replica sharing a GPU also
caps its memory to the same share, so a batch that does not fit its share fails as out of
memory every time, not only when its neighbour is busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuner.errors import field_error

_RAY_RESOURCE_GRAIN = 1e-4


@dataclass(frozen=True)
class GpuLayout:
    """Where the replicas of one GPU trial go.

    Attributes:
        replicas: replicas of the trial.
        replicas_per_gpu: most replicas sharing one GPU (k).
        gpus_used: GPUs the trial occupies (and pays for): ceil(replicas / k).
        num_gpus_per_replica: the Ray `num_gpus` of each replica actor (1/k).
        memory_fraction: share of its GPU's memory each replica may allocate (None when alone).
    """

    replicas: int
    replicas_per_gpu: int
    gpus_used: int
    num_gpus_per_replica: float
    memory_fraction: float | None


def gpu_layout(replicas: int, gpus_available: float) -> GpuLayout:
    """The layout rule of the module docstring.

    Raises:
        TunerError: replicas < 1, or no GPU to place them on.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise field_error("replicas", replicas, "A GPU trial needs at least one replica.", "Use replicas >= 1.")
    gpus = int(math.floor(gpus_available + 1e-9))
    if gpus < 1:
        raise field_error("gpus_available", gpus_available, "A GPU trial needs at least one whole GPU in the cluster.",
                          "Add a GPU node, or leave the gpu platform out of the search.")
    per_gpu = math.ceil(replicas / gpus)
    share = math.floor(1.0 / per_gpu / _RAY_RESOURCE_GRAIN) * _RAY_RESOURCE_GRAIN
    return GpuLayout(replicas, per_gpu, math.ceil(replicas / per_gpu), round(share, 4),
                     None if per_gpu == 1 else round(share, 4))
