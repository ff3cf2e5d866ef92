"""The two GPU backends behind `tuner.evaluators.gpu_bench.GpuReplicaBench`.

A runner builds a program from a model (`build`), binds timing inputs at a batch size (`bind`)
and times one call of `take` instances (`call`, returning seconds after the device finished).
Every call starts from float32 host arrays and ends with the outputs back on the host, as a
served request does: the fp16 ONNX variants keep float32 inputs and outputs too.

fp32 means IEEE fp32: TF32 tensor cores are turned off for both backends (torch enables TF32
for convolutions by default), so fp32 figures compare with the card's FP32 peak. cuDNN's
autotuner (benchmark mode) stays off: server-mode batches come in every size up to the batch
cap, and each new shape would be tuned inside a measured window.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from tuner.errors import TunerError
from tuner.evaluators.gpu_select import CPU_EP, CUDA_EP, INSTALL_HINT, TENSORRT_EP
from tuner.evaluators.gpu_torch_models import TorchSource, build_module, torch_dtype


def require_provider(session_providers: list[str], wanted: str, ort_version: str) -> None:
    """Refuse a session that did not get `wanted` (ORT silently falls back to the CPU when the
    CUDA provider cannot load, and a CPU measurement must never pass for a GPU one)."""
    if not session_providers or session_providers[0] != wanted:
        raise TunerError(
            f"Got providers {session_providers} for the ONNX Runtime session. A GPU trial needs "
            f"{wanted} first: without it ONNX Runtime {ort_version} runs the model on the CPU. Check "
            "that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed on this node (ONNX "
            "Runtime's log names the missing library) and that the device index exists."
        )


class OrtCudaRunner:
    """ONNX Runtime on CUDA (or TensorRT for int8). Timed with a synchronised clock: `run`
    copies the outputs to the host, so it returns only when the device has finished.

    Args:
        device_index: CUDA device (0 inside a Ray actor: Ray sets CUDA_VISIBLE_DEVICES).
        precision: the variant's precision (int8 goes to the TensorRT provider).
        memory_limit_bytes: cap of the CUDA provider's memory arena, or None.
    """

    timing = "synchronised perf_counter (session.run returns host outputs)"

    def __init__(self, device_index: int, precision: str, memory_limit_bytes: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise TunerError(f"The ort GPU backend needs onnxruntime-gpu, which is not installed. {INSTALL_HINT}") from None
        available = ort.get_available_providers()
        if CUDA_EP not in available:
            raise TunerError(
                f"Got onnxruntime {ort.__version__} with providers {available}: the ort GPU backend needs "
                f"{CUDA_EP}, which only the onnxruntime-gpu package has. Install it: pip install 'tuner[gpu]' "
                "(and uninstall the CPU-only onnxruntime, which shadows it), or use the torch backend."
            )
        self._ort = ort
        preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from torch or pip
        if preload is not None:
            with contextlib.suppress(Exception):  # best effort: session creation reports what is missing
                preload()
        self.device = f"cuda:{device_index}"
        self._limit = memory_limit_bytes
        cuda_opts: dict[str, Any] = {"device_id": device_index, "use_tf32": 0,
                                     "arena_extend_strategy": "kSameAsRequested"}
        if memory_limit_bytes:
            cuda_opts["gpu_mem_limit"] = int(memory_limit_bytes)
        self._providers: list[Any] = [(CUDA_EP, cuda_opts), CPU_EP]
        self.wanted = CUDA_EP
        if precision == "int8":
            if TENSORRT_EP not in available:
                raise TunerError(f"Got precision 'int8' for the ort GPU backend. It needs {TENSORRT_EP}, "
                                 f"absent from {available}. Use fp16, or install TensorRT for onnxruntime-gpu.")
            trt = {"device_id": device_index, "trt_int8_enable": True, "trt_fp16_enable": False}
            self._providers.insert(0, (TENSORRT_EP, trt))
            self.wanted = TENSORRT_EP
        self._session: Any = None
        self._feeds: dict[str, np.ndarray] = {}

    def build(self, model: bytes | str) -> Any:
        if isinstance(model, TorchSource):
            raise TunerError(f"Got a TorchSource ({model.name}) for the ort backend. It runs ONNX variants: "
                             "pass the variant's bytes or path, or use the torch backend.")
        opts = self._ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1  # host-side work only; the GPU does the math
        session = self._ort.InferenceSession(model, opts, providers=self._providers)
        require_provider(session.get_providers(), self.wanted, self._ort.__version__)
        return session

    def bind(self, program: Any, feeds: dict[str, np.ndarray]) -> None:
        self._session, self._feeds = program, feeds

    def call(self, take: int) -> float:
        t0 = time.perf_counter()
        self._session.run(None, {k: v[:take] for k, v in self._feeds.items()})
        return time.perf_counter() - t0

    def facts(self) -> dict[str, Any]:
        return {"onnxruntime": self._ort.__version__, "providers": self._session.get_providers() if self._session else
                [p if isinstance(p, str) else p[0] for p in self._providers], "tf32": False,
                "gpu_mem_limit_bytes": self._limit,
                "ort_build_info": getattr(self._ort, "get_build_info", lambda: None)()}

    def memory(self) -> dict[str, Any]:
        return {}  # ORT exposes no arena statistics: the bench asks NVML

    def free(self) -> None:
        self._session, self._feeds = None, {}


class OrtTestRunner(OrtCudaRunner):
    """The TEST backend (``test-cpu``): ONNX Runtime's CPU provider behind the GPU bench, so a
    cluster that declares a GPU resource runs every GPU code path but CUDA. Never chosen by
    default; its figures are CPU figures and every record says so."""

    timing = "perf_counter around session.run (TEST backend on the CPU: not a GPU measurement)"

    def __init__(self, precision: str, threads: int = 1) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.device = "cpu (test backend)"
        self._limit = None
        self._threads = threads
        self._providers = [CPU_EP]
        self.wanted = CPU_EP
        self._session = None
        self._feeds = {}

    def build(self, model: bytes | str) -> Any:
        from tuner.models.sessions import session_options

        session = self._ort.InferenceSession(model, session_options(self._threads), providers=self._providers)
        require_provider(session.get_providers(), self.wanted, self._ort.__version__)
        return session

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "test_backend": True}


class TorchRunner:
    """torch on CUDA, timed with CUDA events on the runner's own stream (replicas that share a
    GPU in one process then overlap instead of queueing on the default stream).

    Args:
        device: "cuda:N"; "cpu" runs the same code path on CPU tensors (tests, no GPU).
        precision: fp32, fp16 or bf16 (parameters and activations in that dtype).
        memory_fraction: cap of this process's share of the device memory, or None.
        time_transfers: True (default) times host inputs to host outputs, as served; False keeps
            inputs and outputs on the device and times the forward pass alone (compute vs peak).
    """

    def __init__(self, device: str, precision: str, memory_fraction: float | None = None,
                 time_transfers: bool = True) -> None:
        import torch

        self._torch = torch
        self.dtype = torch_dtype(precision)
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._stream = None
        if self.cuda:
            if torch.version.cuda is None or not torch.cuda.is_available():
                build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
                raise TunerError(
                    f"Got torch {torch.__version__} ({build}) with no usable CUDA device for the torch GPU "
                    "backend. It needs torch with CUDA and a visible GPU: install a CUDA build of torch on "
                    "the GPU nodes, and check CUDA_VISIBLE_DEVICES and nvidia-smi."
                )
            if self.device.index is not None and self.device.index >= torch.cuda.device_count():
                raise TunerError(f"Got device_index {self.device.index}, but torch sees "
                                 f"{torch.cuda.device_count()} CUDA device(s). Use an index below that.")
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                raise TunerError(f"Got precision 'bf16' on {torch.cuda.get_device_name(self.device)}, which "
                                 "has no bf16 support (compute capability < 8.0). Use fp16.")
            if memory_fraction:
                torch.cuda.set_per_process_memory_fraction(memory_fraction, self.device)
            self._stream = torch.cuda.Stream(self.device)
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        self.time_transfers = time_transfers
        span = "copy-in, forward, copy-out" if time_transfers else "the forward pass (inputs staged on the device)"
        self.timing = f"CUDA events around {span}" if self.cuda else f"perf_counter around {span} (CPU)"
        self._module: Any = None
        self._host: list[Any] = []
        self._staged: list[Any] = []

    def build(self, model: Any) -> Any:
        if not isinstance(model, TorchSource):
            raise TunerError(f"Got {type(model).__name__} for the torch backend's model. It builds built-in "
                             "models from a TorchSource (tuner.evaluators.gpu_torch_models.torch_source_for); measure "
                             "ONNX files with the ort backend.")
        return build_module(model).to(device=self.device, dtype=self.dtype)

    def bind(self, program: Any, feeds: dict[str, np.ndarray]) -> None:
        torch = self._torch
        host = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
        self._host = [h.pin_memory() for h in host] if self.cuda else host
        self._staged = [] if self.time_transfers else [self._to_device(h) for h in self._host]
        self._module = program

    def _to_device(self, host: Any) -> Any:
        x = host.to(self.device, non_blocking=True)
        return x.to(self.dtype) if x.is_floating_point() else x

    def _forward(self, take: int) -> None:
        if not self.time_transfers:
            self._module(*(x[:take] for x in self._staged))
            return
        out = self._module(*(self._to_device(h[:take]) for h in self._host))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            o.float().cpu()

    def call(self, take: int) -> float:
        torch = self._torch
        with torch.inference_mode():
            if not self.cuda:
                t0 = time.perf_counter()
                self._forward(take)
                return time.perf_counter() - t0
            start, end = self._events
            with torch.cuda.stream(self._stream):
                start.record(self._stream)
                self._forward(take)
                end.record(self._stream)
            end.synchronize()
            return start.elapsed_time(end) / 1e3

    def facts(self) -> dict[str, Any]:
        torch = self._torch
        out: dict[str, Any] = {"torch": torch.__version__, "tf32": False, "dtype": str(self.dtype)}
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            out.update(gpu_name=props.name, cuda_runtime=torch.version.cuda,
                       compute_capability=f"{props.major}.{props.minor}",
                       gpu_memory_total_mib=round(props.total_memory / 2**20, 1),
                       cudnn=torch.backends.cudnn.version())
        return out

    def memory(self) -> dict[str, Any]:
        if not self.cuda:
            return {}
        torch = self._torch
        return {"gpu_memory_peak_mib": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1),
                "gpu_memory_reserved_peak_mib": round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1),
                "memory_peak_source": "torch.cuda.max_memory_allocated since the last prepare"}

    def reset_peak(self) -> None:
        if self.cuda:
            self._torch.cuda.reset_peak_memory_stats(self.device)

    def free(self) -> None:
        self._module, self._host, self._staged = None, [], []
        if self.cuda:
            self._torch.cuda.empty_cache()
