"""What a cluster can run: a plain description, filled in by the runner (no Ray import here)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ClusterInfo:
    """Resources of the Ray cluster a study runs on.

    Attributes:
        total_cpus: CPUs in the whole cluster.
        max_node_cpus: CPUs of the largest node (one replica's threads must fit one node).
        total_gpus: GPUs in the whole cluster.
        nodes: number of alive nodes.
        gpu_evaluator: whether GPU trials can be measured here (a GPU runtime imports on the
            GPU nodes, or the test backend was asked for).
        gpu_note: why gpu trials cannot run here (which of GPUs or runtime is missing, and the
            fix), from the probe of the GPU nodes; empty when they can.
        fpga_devices: FPGA models the analytical cost model can price, with their DPU cores
            (FPGA trials are estimated, so no board has to be attached).
    """

    total_cpus: int
    max_node_cpus: int
    total_gpus: float = 0.0
    nodes: int = 1
    gpu_evaluator: bool = False
    gpu_note: str = ""
    fpga_devices: dict[str, int] = field(default_factory=dict)

    def can_run(self, platform: str) -> bool:
        return self.why_not(platform) is None

    def why_not(self, platform: str) -> str | None:
        """None when the platform can run here, else the reason (for a printed note)."""
        if platform == "cpu":
            return None if self.total_cpus >= 1 else "the cluster has no CPUs"
        if platform == "gpu":
            if self.gpu_evaluator and self.total_gpus > 0:
                return None
            if self.gpu_note:
                return self.gpu_note
            return "the Ray cluster has no GPUs" if self.total_gpus <= 0 else "no GPU runtime was found on the GPU nodes"
        if platform == "fpga":
            return None if self.fpga_devices else "no FPGA device is in the catalog"
        return f"unknown platform {platform!r}"

    def reserving(self, cpus: int) -> ClusterInfo:
        """The cluster as replicas see it when `cpus` cores are left to the serving stack."""
        return replace(self, total_cpus=max(0, self.total_cpus - cpus), max_node_cpus=max(0, self.max_node_cpus - cpus))

    def fpga_cores(self, device: str) -> int:
        return self.fpga_devices.get(device, 1)
