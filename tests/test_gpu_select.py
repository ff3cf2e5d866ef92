"""Backend/provider selection, the replica resources rule and the platform availability note,
from installed-library facts given as data (no GPU needed, and none pretended)."""

from __future__ import annotations

import math

import pytest

from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.evaluators.gpu_select import (
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    GpuPlan,
    GpuRefusal,
    RuntimeFacts,
    detect_runtime,
    gpu_layout,
    gpu_platform_available,
    gpu_resources,
    is_gpu_oom,
    plan_gpu,
)

CPU_ONLY = RuntimeFacts("1.32.0", ("AzureExecutionProvider", CPU_EP), "2.13.0+cpu", False, 0, False, ())
ORT_GPU_H100 = RuntimeFacts("1.22.0", (CUDA_EP, CPU_EP), "2.11.0+cu130", True, 1, True, ("NVIDIA H100 80GB HBM3",))
TORCH_ONLY_H100 = RuntimeFacts("1.30.0", (CPU_EP,), "2.11.0+cu130", True, 1, True, ("NVIDIA H100 80GB HBM3",))
ORT_GPU_T4 = RuntimeFacts("1.22.0", (CUDA_EP, CPU_EP), "2.11.0+cu130", True, 1, False, ("Tesla T4",))
ORT_TRT = RuntimeFacts("1.22.0", (TENSORRT_EP, CUDA_EP, CPU_EP), None, False, 0, False, ())


def test_onnx_runtime_is_preferred_for_the_precisions_it_runs():
    for precision in ("fp32", "fp16"):
        plan = plan_gpu(precision, ORT_GPU_H100, has_torch_model=True)
        assert isinstance(plan, GpuPlan)
        assert (plan.backend, plan.providers) == ("ort", (CUDA_EP, CPU_EP))


def test_bf16_falls_back_to_torch_and_says_why_not_ort():
    plan = plan_gpu("bf16", ORT_GPU_H100, has_torch_model=True)
    assert isinstance(plan, GpuPlan) and plan.backend == "torch" and plan.providers == ()
    assert "bf16" in plan.note and "ort" in plan.note


def test_bf16_is_refused_on_a_card_without_it_with_every_reason():
    refusal = plan_gpu("bf16", ORT_GPU_T4, has_torch_model=True)
    assert isinstance(refusal, GpuRefusal)
    assert len(refusal.reasons) == 2
    assert "Tesla T4" in refusal.message and "compute capability 8.0" in refusal.message


def test_int8_needs_tensorrt_and_torch_has_no_int8():
    refusal = plan_gpu("int8", ORT_GPU_H100, has_torch_model=True)
    assert isinstance(refusal, GpuRefusal)
    assert TENSORRT_EP in refusal.reasons[0] and "int8" in refusal.reasons[1]
    plan = plan_gpu("int8", ORT_TRT, has_torch_model=False)
    assert isinstance(plan, GpuPlan) and plan.providers == (TENSORRT_EP, CUDA_EP, CPU_EP)


def test_an_onnx_file_without_onnxruntime_gpu_cannot_use_torch():
    refusal = plan_gpu("fp16", TORCH_ONLY_H100, has_torch_model=False)
    assert isinstance(refusal, GpuRefusal)
    assert "onnxruntime-gpu" in refusal.reasons[0]
    assert "no torch definition" in refusal.reasons[1]


def test_a_builtin_model_runs_on_torch_when_only_torch_has_cuda():
    plan = plan_gpu("fp32", TORCH_ONLY_H100, has_torch_model=True)
    assert isinstance(plan, GpuPlan) and plan.backend == "torch"


def test_preference_order_is_honoured():
    plan = plan_gpu("fp32", ORT_GPU_H100, has_torch_model=True, prefer=("torch", "ort"))
    assert isinstance(plan, GpuPlan) and plan.backend == "torch"


def test_a_cpu_only_machine_runs_nothing_and_names_both_missing_runtimes():
    refusal = plan_gpu("fp32", CPU_ONLY, has_torch_model=True)
    assert isinstance(refusal, GpuRefusal)
    assert "onnxruntime-gpu" in refusal.message and "CPU-only build" in refusal.message


def test_bad_precision_and_backend_are_refused_with_the_value():
    with pytest.raises(TunerError, match="'fp8' for precision"):
        plan_gpu("fp8", ORT_GPU_H100, has_torch_model=True)
    with pytest.raises(TunerError, match="'tensorflow' for backend"):
        plan_gpu("fp32", ORT_GPU_H100, has_torch_model=True, prefer=("tensorflow",))


@pytest.mark.parametrize(
    ("gpus", "facts", "torch_model", "ok", "words"),
    [
        (0, ORT_GPU_H100, True, False, "no GPUs"),
        (1, None, True, False, "could not be probed"),
        (2, CPU_ONLY, True, False, "tuner[gpu]"),
        (1, TORCH_ONLY_H100, False, False, "no torch definition"),
        (1, TORCH_ONLY_H100, True, True, "via torch"),
        (4, ORT_GPU_H100, False, True, "4 x NVIDIA H100 80GB HBM3 via onnxruntime-gpu and torch"),
    ],
)
def test_platform_availability_gives_a_clear_note(gpus, facts, torch_model, ok, words):
    available, note = gpu_platform_available(gpus, facts, torch_model)
    assert available is ok
    assert words in note
    assert note.startswith("gpu platform " + ("offered" if ok else "left out"))


@pytest.mark.parametrize(
    ("replicas", "gpus", "per_gpu", "share", "used", "memory"),
    [
        (1, 1, 1, 1.0, 1, None),
        (2, 4, 1, 1.0, 2, None),  # one GPU each
        (4, 4, 1, 1.0, 4, None),
        (4, 1, 4, 0.25, 1, 0.25),  # all share one GPU
        (3, 1, 3, 0.3333, 1, 0.3333),
        (4, 2, 2, 0.5, 2, 0.5),
        (5, 2, 3, 0.3333, 2, 0.3333),
        (2, 1.5, 2, 0.5, 1, 0.5),  # half a GPU is not a GPU to place on
    ],
)
def test_layout_rule(replicas, gpus, per_gpu, share, used, memory):
    layout = gpu_layout(replicas, gpus)
    assert (layout.replicas_per_gpu, layout.num_gpus_per_replica, layout.gpus_used, layout.memory_fraction) == (
        per_gpu, share, used, memory)


def test_layout_always_fits_the_gpus_it_claims():
    for gpus in range(1, 9):
        for replicas in range(1, 33):
            layout = gpu_layout(replicas, gpus)
            assert layout.replicas_per_gpu * layout.num_gpus_per_replica <= 1.0  # Ray can pack them
            assert layout.gpus_used <= gpus
            assert layout.gpus_used * layout.replicas_per_gpu >= replicas
            assert layout.gpus_used == math.ceil(replicas / layout.replicas_per_gpu)


def test_layout_refuses_no_gpu_and_no_replica():
    with pytest.raises(TunerError, match="gpus_available"):
        gpu_layout(1, 0)
    with pytest.raises(TunerError, match="replicas"):
        gpu_layout(0, 1)


def test_resources_of_one_replica_actor():
    config = TrialConfig("gpu", 16, "fp16", 2, device="h100")
    assert gpu_resources(config, 1) == {"num_gpus": 0.5, "num_cpus": 1}
    assert gpu_resources(config, 2) == {"num_gpus": 1.0, "num_cpus": 1}
    with pytest.raises(TunerError, match="gpu trials only"):
        gpu_resources(TrialConfig("cpu", 16, "fp32", 2), 1)


@pytest.mark.parametrize(
    ("message", "oom"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)", True),
        ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 1", True),
        ("CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED", True),
        ("CUDA error: cudaErrorMemoryAllocation", True),
        ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x", False),
        ("mat1 and mat2 shapes cannot be multiplied", False),
    ],
)
def test_out_of_memory_messages_are_recognised(message, oom):
    assert is_gpu_oom(message) is oom


def test_detect_runtime_reports_what_is_installed_here():
    import onnxruntime
    import torch

    facts = detect_runtime()
    assert facts.ort_version == onnxruntime.__version__
    assert facts.ort_providers == tuple(onnxruntime.get_available_providers())
    assert facts.torch_version == torch.__version__
    assert facts.torch_cuda == (torch.version.cuda is not None and torch.cuda.is_available())
    assert facts.cuda_devices == len(facts.device_names)
