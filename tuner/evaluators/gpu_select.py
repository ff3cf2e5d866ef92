"""Which GPU backend runs a (model, precision), the Ray resources of a GPU replica, and whether
the gpu platform can be offered at all. Pure functions of plain facts, so all of it is tested
without a GPU; `detect_runtime()` is the one function that looks at the installed libraries.

Backends:
    ort   ONNX Runtime with the CUDA execution provider (package onnxruntime-gpu), on the same
          ONNX variants the CPU platform measures: fp32, fp16; int8 (QDQ) only through the
          TensorRT provider, since the CUDA provider has no int8 convolution kernels; no bf16
          (tuner builds no bf16 ONNX variant and the CUDA provider lacks bf16 Conv).
    torch torch on CUDA, for built-in models with a torch definition: fp32, fp16, and bf16 where
          the card supports it (compute capability >= 8.0); no int8 (eager torch has no int8
          CUDA inference path).
    test-cpu  FOR TESTS ONLY, never chosen by default: ONNX Runtime's CPU provider on the ONNX
          variants, on a Ray cluster that *declares* a GPU resource (``--num-gpus``), so that
          detection, placement, fractional sharing, records, promote and serving run for real
          on a machine without a GPU. Its figures are CPU figures; every record names the
          backend and says ``test_backend: true``. Only CUDA itself is not exercised.

`tuner tune` measures GPU trials with ``ort`` (``--gpu-backend``): the Serve application that
promote deploys runs the same ONNX Runtime sessions, so what is tuned is what is served. The
torch backend is measured by experiments/gpu_check.py only.

Replica layout (`gpu_layout`): with R replicas and G GPUs in the cluster, each GPU holds at most
k = ceil(R / G) replicas and a replica asks Ray for num_gpus = 1/k (rounded down to Ray's 1e-4
resource grain). So R <= G gives one GPU each (num_gpus 1), and R replicas on one GPU share it
(num_gpus 1/R). A replica sharing a GPU also caps its memory to the same share, so a batch that
does not fit its share fails as out of memory every time, not only when its neighbour is busy.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuner.config import TrialConfig
from tuner.errors import field_error
from tuner.gpu_share import GpuLayout, gpu_layout

__all__ = ["GpuLayout", "gpu_layout"]  # the sharing rule lives in tuner.gpu_share (prices use it too)

TEST_BACKEND = "test-cpu"
#: The backends that run on a GPU, in order of preference (the test backend is never chosen by default).
GPU_BACKENDS: tuple[str, ...] = ("ort", "torch")
BACKENDS: tuple[str, ...] = (*GPU_BACKENDS, TEST_BACKEND)
#: Backends `tuner tune` can measure with (the served application runs ONNX Runtime).
PRODUCT_BACKENDS: tuple[str, ...] = ("ort", TEST_BACKEND)
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
CPU_EP = "CPUExecutionProvider"
INSTALL_HINT = "Install a GPU runtime on the GPU nodes: pip install 'tuner[gpu]' (onnxruntime-gpu), or torch with CUDA."
# Substrings of the errors torch and ONNX Runtime raise when device memory runs out.
OOM_MARKERS: tuple[str, ...] = (
    "out of memory", "failed to allocate memory", "cudaerrormemoryallocation",
    "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cuda_error_out_of_memory",
)


@dataclass(frozen=True)
class RuntimeFacts:
    """What a GPU node has installed (gathered by `detect_runtime`, or given as data in tests).

    Attributes:
        ort_version: onnxruntime version, or None when it is not installed.
        ort_providers: ONNX Runtime's available execution providers.
        torch_version: torch version, or None when it is not installed.
        torch_cuda: torch was built with CUDA and sees at least one device.
        cuda_devices: CUDA devices torch sees.
        bf16_supported: the first device runs bf16 (torch.cuda.is_bf16_supported()).
        device_names: CUDA device names, in index order.
    """

    ort_version: str | None = None
    ort_providers: tuple[str, ...] = ()
    torch_version: str | None = None
    torch_cuda: bool = False
    cuda_devices: int = 0
    bf16_supported: bool = False
    device_names: tuple[str, ...] = ()

    @property
    def ort_cuda(self) -> bool:
        return CUDA_EP in self.ort_providers

    @property
    def any_gpu_runtime(self) -> bool:
        return self.ort_cuda or self.torch_cuda


@dataclass(frozen=True)
class GpuPlan:
    """How a (model, precision) will be measured on a GPU.

    Attributes:
        backend: "ort" or "torch".
        precision: fp32, fp16, bf16 or int8.
        providers: ONNX Runtime providers in order (empty for torch); the bench refuses a session
            that did not get the first one.
        note: why this backend was chosen, for the trial's details.
    """

    backend: str
    precision: str
    providers: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class GpuRefusal:
    """Why no backend can run a (model, precision): one reason per backend considered."""

    precision: str
    reasons: tuple[str, ...]

    @property
    def message(self) -> str:
        return f"{self.precision} cannot run on the GPU here: " + "; ".join(self.reasons) + "."


def backend_reason(backend: str, precision: str, facts: RuntimeFacts, has_torch_model: bool) -> str | None:
    """None when `backend` can run `precision` here, else the reason it cannot."""
    if backend == "ort":
        if facts.ort_version is None:
            return "ort: onnxruntime is not installed"
        if not facts.ort_cuda:
            return (f"ort: onnxruntime {facts.ort_version} has no {CUDA_EP} (providers {list(facts.ort_providers)}; "
                    "the CPU-only package is installed, not onnxruntime-gpu)")
        if precision == "bf16":
            return "ort: tuner builds no bf16 ONNX variant and the CUDA provider lacks bf16 convolutions"
        if precision == "int8" and TENSORRT_EP not in facts.ort_providers:
            return (f"ort: int8 needs the {TENSORRT_EP} (the CUDA provider has no int8 convolution kernels: "
                    "a QDQ model would run dequantized float kernels)")
        return None
    if backend == "torch":
        if facts.torch_version is None:
            return "torch: torch is not installed"
        if not facts.torch_cuda:
            return f"torch: torch {facts.torch_version} has no usable CUDA device (CPU-only build, or no GPU visible)"
        if not has_torch_model:
            return "torch: the model has no torch definition (only built-in models do)"
        if precision == "int8":
            return "torch: eager torch has no int8 CUDA inference path (its quantized kernels are CPU-only)"
        if precision == "bf16" and not facts.bf16_supported:
            names = ", ".join(facts.device_names) or "this GPU"
            return f"torch: {names} does not support bf16 (it needs compute capability 8.0 or newer)"
        return None
    if backend == TEST_BACKEND:
        if facts.ort_version is None:
            return f"{TEST_BACKEND}: onnxruntime is not installed"
        if precision == "bf16":
            return f"{TEST_BACKEND}: tuner builds no bf16 ONNX variant"
        return None
    raise field_error("backend", backend, f"It must be one of {list(BACKENDS)}.", "Use 'ort' or 'torch'.")


def plan_gpu(precision: str, facts: RuntimeFacts, has_torch_model: bool,
             prefer: tuple[str, ...] = GPU_BACKENDS) -> GpuPlan | GpuRefusal:
    """The first backend in `prefer` that can run `precision`, or every reason none can.

    ONNX Runtime comes first by default: it runs the same ONNX variants the CPU platform
    measures and the serving app deploys, so GPU and CPU trials compare like with like.
    """
    if precision not in ("fp32", "fp16", "bf16", "int8"):
        raise field_error("precision", precision, "It must be fp32, fp16, bf16 or int8.", "Fix the search space.")
    reasons: list[str] = []
    for backend in prefer:
        reason = backend_reason(backend, precision, facts, has_torch_model)
        if reason is None:
            if backend == TEST_BACKEND:
                return GpuPlan(TEST_BACKEND, precision, (CPU_EP,),
                               f"TEST backend: ONNX Runtime {facts.ort_version} on the CPU (not a GPU measurement)")
            if backend == "ort":
                providers = (TENSORRT_EP, CUDA_EP, CPU_EP) if precision == "int8" else (CUDA_EP, CPU_EP)
                return GpuPlan("ort", precision, providers, f"ONNX Runtime {facts.ort_version}, {providers[0]}")
            why_not = f" (not {reasons[0]})" if reasons else ""
            return GpuPlan("torch", precision, (), f"torch {facts.torch_version} on CUDA{why_not}")
        reasons.append(reason)
    return GpuRefusal(precision, tuple(reasons))


def gpu_platform_available(cluster_gpus: float, facts: RuntimeFacts | None,
                           has_torch_model: bool) -> tuple[bool, str]:
    """Whether the gpu platform can be offered, and a note saying why (not).

    Args:
        cluster_gpus: GPUs in the Ray cluster.
        facts: the runtime of a GPU node (None when none could be probed).
        has_torch_model: the model has a torch definition (built-in models).
    """
    if cluster_gpus <= 0:
        return False, "gpu platform left out: the Ray cluster has no GPUs"
    if facts is None:
        return False, "gpu platform left out: the GPU nodes' runtime could not be probed"
    if not facts.any_gpu_runtime:
        return False, ("gpu platform left out: the GPU nodes have no GPU runtime (onnxruntime "
                       f"providers {list(facts.ort_providers)}, torch CUDA {facts.torch_cuda}). {INSTALL_HINT}")
    if not facts.ort_cuda and not has_torch_model:
        return False, ("gpu platform left out: only torch has CUDA here, and this model has no torch "
                       f"definition (only built-in models do). {INSTALL_HINT}")
    names = ", ".join(sorted(set(facts.device_names))) or "GPU"
    runtimes = [r for r, ok in (("onnxruntime-gpu", facts.ort_cuda), ("torch", facts.torch_cuda)) if ok]
    return True, f"gpu platform offered: {cluster_gpus:g} x {names} via {' and '.join(runtimes)}"


def gpu_resources(config: TrialConfig, gpus_available: float) -> dict[str, float]:
    """Ray resources of ONE replica actor of a gpu trial: {"num_gpus": 1/k, "num_cpus": 1}.

    One CPU per replica drives its GPU (launches kernels, copies inputs).
    """
    platform = config.platform
    if platform != "gpu":
        raise field_error("platform", platform, "GPU resources are for gpu trials only.",
                          "Ask the resources of the trial's own platform.")
    layout = gpu_layout(config.replicas, gpus_available)
    return {"num_gpus": layout.num_gpus_per_replica, "num_cpus": 1}


def is_gpu_oom(text: str) -> bool:
    """Whether an error message says device memory ran out (torch or ONNX Runtime)."""
    low = text.lower()
    return any(marker in low for marker in OOM_MARKERS)


def detect_runtime() -> RuntimeFacts:
    """The facts of this process's environment. Run it ON a GPU node (e.g. a Ray task with
    num_gpus=1): the driver may have no GPU or another runtime."""
    ort_version, providers = None, ()
    try:
        import onnxruntime as ort

        ort_version, providers = ort.__version__, tuple(ort.get_available_providers())
    except ImportError:
        pass
    torch_version, cuda, count, bf16 = None, False, 0, False
    names: tuple[str, ...] = ()
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.version.cuda is not None and torch.cuda.is_available()
        if cuda:
            count = torch.cuda.device_count()
            names = tuple(torch.cuda.get_device_name(i) for i in range(count))
            bf16 = bool(torch.cuda.is_bf16_supported())
    except ImportError:
        pass
    return RuntimeFacts(ort_version, providers, torch_version, cuda, count, bf16, names)
