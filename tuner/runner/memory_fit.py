"""A trial's memory, predicted from the graph and the batch before it runs, so a configuration
that cannot fit is recorded infeasible with the reason instead of being killed by the kernel.

    per replica = 3 x (peak live activation bytes of one instance) x batch
                  + 2 x (variant file bytes) + 200 MiB (the replica process)

The factor 3 is measured (ONNX Runtime's arena on a 640 x 640 text detector grew 117 MiB at
batch 1 and 1936 MiB at batch 16 against 42 and 671 MiB of live tensors); weights are held
twice while a session loads. A trial fits when all its replicas together fit the trial memory
budget (the space's `constraints.trial_memory_gib_max`, by default a quarter of the cluster's
memory: a trial that takes more leaves the machine nothing for the rest), each replica fits
the largest node's memory and all replicas fit the cluster's. Memory is Ray's `memory`
resource of the alive nodes (what Ray offers tasks: about 70% of the node's memory when it
started). Batch sizes whose single replica exceeds the budget are left out of the search up
front (tuner.study.model_fit.memory_batches).
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
    return MemoryPrediction(predict_bytes(config.batch_size, activation_bytes_per_instance, variant_bytes),
                            max(1, config.replicas))


DEFAULT_BUDGET_SHARE = 0.25


def trial_budget_bytes(limit_gib: float | None, node_bytes: list[int]) -> int | None:
    """The largest predicted memory one trial may take: the space's `trial_memory_gib_max`, or
    a quarter of the cluster's memory (None when no node reports its memory)."""
    if limit_gib is not None:
        return int(limit_gib * 2**30)
    return int(DEFAULT_BUDGET_SHARE * sum(node_bytes)) if node_bytes else None


def largest_batch(batches: list[int], activation_bytes_per_instance: int, variant_bytes: int,
                  budget_bytes: int) -> int | None:
    """The largest of `batches` whose one replica fits `budget_bytes` (None: not even the smallest)."""
    fitting = [b for b in batches if predict_bytes(b, activation_bytes_per_instance, variant_bytes) <= budget_bytes]
    return max(fitting) if fitting else None


def predict_bytes(batch: int, activation_bytes_per_instance: int, variant_bytes: int) -> int:
    return ARENA_FACTOR * activation_bytes_per_instance * batch + 2 * variant_bytes + PROCESS_BYTES


def why_not_fits(prediction: MemoryPrediction, node_bytes: list[int], budget_bytes: int | None = None) -> str | None:
    """The reason a trial cannot fit (None when it fits, or when no node reports its memory)."""
    if not node_bytes:
        return None
    gib = 2**30
    if budget_bytes is not None and prediction.total_bytes > budget_bytes:
        return (f"predicted memory {prediction.total_bytes / gib:.1f} GiB ({prediction.replicas} replica(s); activations "
                f"x batch, from the graph) exceeds the trial memory budget {budget_bytes / gib:.1f} GiB "
                "(constraints.trial_memory_gib_max; default a quarter of the cluster's memory)")
    if prediction.per_replica_bytes > max(node_bytes):
        return (f"predicted memory {prediction.per_replica_bytes / gib:.1f} GiB per replica (activations x batch, "
                f"from the graph) exceeds the largest node's {max(node_bytes) / gib:.1f} GiB: use a smaller batch")
    if prediction.total_bytes > sum(node_bytes):
        return (f"predicted memory {prediction.total_bytes / gib:.1f} GiB for {prediction.replicas} replicas exceeds "
                f"the cluster's {sum(node_bytes) / gib:.1f} GiB: use fewer replicas or a smaller batch")
    return None
