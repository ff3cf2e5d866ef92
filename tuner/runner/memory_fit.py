"""A trial's memory, predicted from the graph and the batch before it runs, so a configuration
that cannot fit is recorded infeasible with the reason instead of being killed by the kernel.

    per replica = 3 x (peak live activation bytes of one instance) x batch
                  + 2 x (variant file bytes) + 200 MiB (the replica process)

The factor 3 is measured (ONNX Runtime's arena on a 640 x 640 text detector grew 117 MiB at
batch 1 and 1936 MiB at batch 16 against 42 and 671 MiB of live tensors); weights are held
twice while a session loads. A trial fits when each replica fits the largest node's memory
and all replicas fit the cluster's; memory is Ray's `memory` resource of the alive nodes
(what Ray offers tasks: about 70% of the node's memory when it started).
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.config import TrialConfig

ARENA_FACTOR = 3
PROCESS_BYTES = 200 * 2**20


@dataclass(frozen=True)
class MemoryPrediction:
    per_replica_bytes: int
    replicas: int

    @property
    def total_bytes(self) -> int:
        return self.per_replica_bytes * self.replicas


def predict(config: TrialConfig, activation_bytes_per_instance: int, variant_bytes: int) -> MemoryPrediction:
    per_replica = ARENA_FACTOR * activation_bytes_per_instance * config.batch_size + 2 * variant_bytes + PROCESS_BYTES
    return MemoryPrediction(per_replica, max(1, config.replicas))


def why_not_fits(prediction: MemoryPrediction, node_bytes: list[int]) -> str | None:
    """The reason a trial cannot fit (None when it fits, or when no node reports its memory)."""
    if not node_bytes:
        return None
    gib = 2**30
    if prediction.per_replica_bytes > max(node_bytes):
        return (f"predicted memory {prediction.per_replica_bytes / gib:.1f} GiB per replica (activations x batch, "
                f"from the graph) exceeds the largest node's {max(node_bytes) / gib:.1f} GiB: use a smaller batch")
    if prediction.total_bytes > sum(node_bytes):
        return (f"predicted memory {prediction.total_bytes / gib:.1f} GiB for {prediction.replicas} replicas exceeds "
                f"the cluster's {sum(node_bytes) / gib:.1f} GiB: use fewer replicas or a smaller batch")
    return None
