"""The gpu platform in `tuner tune`: what the cluster's GPU nodes can run (`GpuSetup`, from a
probe on a GPU node), and the `ReplicaEvaluator` whose replicas are Ray actors holding
`num_gpus` (a whole GPU each, or 1/k of one when k replicas share it; `select.gpu_layout`).

Replicas are measured with the same contract and protocol as CPU replicas (`GpuReplicaBench`:
warm-up, windows, confidence intervals), each pinned to one host core that drives its GPU.
An out-of-memory batch raises an error whose text says "out of memory": the runner records the
configuration as infeasible, and the study never measures it again.

The backend is a documented choice, not a search dimension: ONNX Runtime with the CUDA provider
(TensorRT for int8), because the Serve application that promote deploys runs the same ONNX
sessions. ``test-cpu`` exists for tests only (see `select`). No Ray import here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tuner.config import TrialConfig
from tuner.evaluators.base import ReplicaEvaluator
from tuner.evaluators.gpu_select import (
    CPU_EP,
    CUDA_EP,
    INSTALL_HINT,
    PRODUCT_BACKENDS,
    TENSORRT_EP,
    TEST_BACKEND,
    GpuLayout,
    RuntimeFacts,
    gpu_layout,
    gpu_platform_available,
)

#: The catalog (and price) key of the test backend's declared GPU: priced as one vCPU.
TEST_DEVICE = "test-cpu"


@dataclass(frozen=True)
class GpuSetup:
    """What gpu trials run on in this cluster.

    Attributes:
        backend: "ort" (ONNX Runtime CUDA / TensorRT) or "test-cpu" (tests only).
        gpus: GPUs the Ray cluster has (its GPU resource), whole or declared.
        device: the card's key in tuner/catalog/gpu_devices.yaml and prices.yaml ("t4", "h100",
            ... or "test-cpu"); a card the catalog lacks gets a key made from its name, and a
            price for it must be given in the search space.
        device_name: the card as CUDA names it (or what the test backend stands for).
        providers_by_precision: the ONNX Runtime providers each precision runs with.
    """

    backend: str
    gpus: float
    device: str
    device_name: str
    providers_by_precision: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def test_backend(self) -> bool:
        return self.backend == TEST_BACKEND

    def providers(self, precision: str) -> tuple[str, ...]:
        return dict(self.providers_by_precision).get(precision, (CUDA_EP, CPU_EP))

    def layout(self, config: TrialConfig) -> GpuLayout:
        return gpu_layout(config.replicas, self.gpus)

    def record(self, config: TrialConfig, replicas_info: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """The `gpu` record of one trial (what `tuner show --json` gives as its `gpu` key)."""
        layout = self.layout(config)
        peaks = [i.get("gpu_memory_peak_mib") for i in replicas_info]
        known = [float(p) for p in peaks if p is not None]
        return {
            "backend": self.backend, "test_backend": self.test_backend,
            "device": self.device, "device_name": self.device_name,
            "providers": list(self.providers(config.precision)),
            "num_gpus_per_replica": layout.num_gpus_per_replica, "replicas_per_gpu": layout.replicas_per_gpu,
            "gpus_used": layout.gpus_used, "gpu_fraction_used": round(layout.num_gpus_per_replica * config.replicas, 4),
            "memory_fraction": layout.memory_fraction,
            "gpu_memory_peak_mib": max(known) if known else None,
            "gpu_memory_source": next((i.get("memory_peak_source") for i in replicas_info
                                       if i.get("memory_peak_source")), None),
        }


def device_key(card_name: str) -> str:
    """The catalog key of a CUDA device name ("NVIDIA H100 80GB HBM3" -> "h100"), or a slug of
    the name when the catalog does not know the card."""
    from tuner.costmodels.gpu.devices import match_device

    device = match_device(card_name)
    if device is not None:
        return device.price_key.split(".", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "-", card_name.lower()).strip("-") or "unknown-gpu"


def detect_gpu_setup(cluster_gpus: float, facts: RuntimeFacts | None, backend: str) -> tuple[GpuSetup | None, str]:
    """The gpu setup of a cluster with `cluster_gpus` GPUs whose GPU node reported `facts`, and
    the note to print: why gpu is offered, or which of the two things is missing and the fix."""
    if backend not in PRODUCT_BACKENDS:
        raise ValueError(f"backend {backend!r}: tuner tune measures gpu trials with one of {PRODUCT_BACKENDS}")
    if cluster_gpus <= 0:
        return None, ("the Ray cluster has no GPUs (Ray detects none here; on a GPU machine check nvidia-smi and "
                      "CUDA_VISIBLE_DEVICES; nodes started with ray start declare theirs with --num-gpus N)")
    if facts is None:
        return None, "the GPU nodes' runtime could not be probed (a probe task on a GPU node did not answer)"
    if backend == TEST_BACKEND:
        if facts.ort_version is None:
            return None, f"the {TEST_BACKEND} backend needs onnxruntime on the GPU nodes"
        test = tuple((p, (CPU_EP,)) for p in ("fp32", "fp16", "int8"))
        return GpuSetup(TEST_BACKEND, cluster_gpus, TEST_DEVICE, "declared GPU resource (TEST backend on the CPU)", test), (
            f"gpu platform offered with the TEST backend: {cluster_gpus:g} declared GPU(s), ONNX Runtime "
            f"{facts.ort_version} on the CPU; gpu figures are CPU figures (for tests, never a GPU measurement)")
    if not facts.ort_cuda:
        found = f"onnxruntime {facts.ort_version}" if facts.ort_version else "no onnxruntime"
        return None, (f"no GPU runtime on the GPU nodes: {found} with providers {list(facts.ort_providers)}, no "
                      f"{CUDA_EP}. Install onnxruntime-gpu there: pip install 'tuner[gpu]' and the reinstall in the "
                      "README, 'On a GPU machine'")
    _offered, note = gpu_platform_available(cluster_gpus, facts, has_torch_model=False)
    by: list[tuple[str, tuple[str, ...]]] = [(p, (CUDA_EP, CPU_EP)) for p in ("fp32", "fp16")]
    if TENSORRT_EP in facts.ort_providers:
        by.append(("int8", (TENSORRT_EP, CUDA_EP, CPU_EP)))
    name = facts.device_names[0] if facts.device_names else "GPU"
    return GpuSetup("ort", cluster_gpus, device_key(name), name, tuple(by)), note


def why_not_precision(setup: GpuSetup, config: TrialConfig) -> str | None:
    """None when the setup's backend runs the config's precision, else why not (a trial's
    infeasibility)."""
    precision = config.precision
    if precision in dict(setup.providers_by_precision):
        return None
    if precision == "bf16":
        return "bf16 has no ONNX variant (tuner builds none) for ONNX Runtime to run on the GPU"
    if precision == "int8":
        return (f"int8 on the GPU needs ONNX Runtime's {TENSORRT_EP}, which this GPU node lacks "
                "(the CUDA provider has no int8 convolution kernels)")
    return f"{precision} is not run by the {setup.backend} backend here. {INSTALL_HINT}"


def make_gpu_bench(setup: GpuSetup, config: TrialConfig, cores: Sequence[int] | None) -> Any:
    """The bench of one GPU replica, in its own Ray actor (Ray sets CUDA_VISIBLE_DEVICES, so its
    GPU is device 0), pinned to the host core that drives it."""
    from tuner.evaluators.gpu_bench import GpuReplicaBench

    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, list(cores))
    return GpuReplicaBench(setup.backend, 0, config.precision, memory_fraction=setup.layout(config).memory_fraction)


def _one_core(config: TrialConfig) -> int:
    return 1  # a replica's host thread: launches kernels and copies inputs


def _bench_key(setup: GpuSetup, config: TrialConfig) -> Hashable:
    layout = setup.layout(config)
    return (setup.backend, config.precision, layout.num_gpus_per_replica, layout.memory_fraction)


def _resources(setup: GpuSetup, config: TrialConfig) -> dict[str, float]:
    return {"num_gpus": setup.layout(config).num_gpus_per_replica}


def gpu_evaluator(setup: GpuSetup) -> ReplicaEvaluator:
    """The measured gpu platform of a cluster whose GPU nodes `setup` describes."""
    return ReplicaEvaluator("gpu", make_bench=partial(make_gpu_bench, setup), cores_per_replica=_one_core,
                            bench_key=partial(_bench_key, setup), actor_resources=partial(_resources, setup),
                            refuses=partial(why_not_precision, setup), record=setup.record)
