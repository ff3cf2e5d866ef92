"""GPU evaluator: one replica per process on a CUDA device, real load, device-synchronised clocks.

`GpuReplicaBench` has the method contract of the CPU `ReplicaBench` (prepare / info / run_for /
serve_for returning `WindowSample`s), so `protocol.run_protocol` drives both the same way:

- offline: calls of `batch_size` instances back to back; each call's latency comes from CUDA
  events (torch) or a clock read after the outputs are back on the host (ONNX Runtime);
- server: single-instance requests arriving as a Poisson process, batched up to `batch_size`
  (waiting at most `max_wait_s`); a request's latency runs from its arrival to its batch's
  completion, as on the CPU.

Backends (see `gpu_select` for which one a trial gets): "ort" = ONNX Runtime's CUDA provider
on the ONNX variants; "torch" = the torch definition of a built-in model, cast to fp32/fp16/bf16.
Running out of device memory raises `GpuOutOfMemoryError`, whose message contains "out of
memory": the runner reports that configuration as infeasible rather than failed.

This module imports neither Ray nor torch at import time, and imports fine without CUDA; the
constructor is what checks for a GPU runtime, with an error naming what is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from tuner.errors import TunerError, field_error
from tuner.evaluators.base import thread_broadcast, timing_inputs
from tuner.evaluators.gpu_select import BACKENDS, TEST_BACKEND, is_gpu_oom
from tuner.evaluators.windows import WindowSample, serve_poisson
from tuner.models.spec import InputSpec
from tuner.spec.measurement import LoadSpec, MeasurementSettings

_PROGRAMS_KEPT = 2  # sessions / modules kept per replica: each holds device memory
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class GpuOutOfMemoryError(TunerError):
    """The configuration needs more device memory than the replica has (an infeasible config)."""


def _check_args(backend: str, device_index: int, precision: str, memory_fraction: float | None) -> None:
    if backend not in BACKENDS:
        raise field_error("backend", backend, f"It must be one of {list(BACKENDS)}.",
                          "Use 'ort' (ONNX Runtime CUDA provider) or 'torch'.")
    if precision not in PRECISIONS:
        raise field_error("precision", precision, f"It must be one of {list(PRECISIONS)}.", "Fix the trial config.")
    if backend in ("ort", TEST_BACKEND) and precision == "bf16":
        raise field_error("precision", precision, "The ort backend has no bf16 variant to run (tuner builds none, "
                          "and ONNX Runtime's CUDA provider lacks bf16 convolutions).",
                          "Measure bf16 with the torch backend (built-in models).")
    if isinstance(device_index, bool) or not isinstance(device_index, int) or device_index < 0:
        raise field_error("device_index", device_index, "It must be a CUDA device index >= 0.",
                          "Use 0 inside a Ray actor (Ray sets CUDA_VISIBLE_DEVICES).")
    if memory_fraction is not None and not 0 < memory_fraction <= 1:
        raise field_error("memory_fraction", memory_fraction, "It must be in (0, 1].",
                          "Use gpu_select.gpu_layout(...).memory_fraction, or None for a whole GPU.")


class GpuReplicaBench:
    """One GPU replica: cached sessions (or modules) on one device, a built-in load generator.

    Args:
        backend: "ort", "torch" or "test-cpu" (tests only: ONNX Runtime on the CPU).
        device_index: CUDA device index as this process sees it.
        precision: fp32, fp16, bf16 (torch only) or int8 (ort with TensorRT only).
        memory_fraction: share of the device memory this replica may use (replicas sharing a
            GPU), or None for no cap.
        time_transfers: True (default: what a served request costs) times each call from host
            inputs to host outputs; False (torch only) times the forward pass on inputs already on
            the device, to compare compute with the card's peak.

    Raises:
        TunerError: a bad argument, or no GPU runtime for the backend (the message names what is
            missing and how to install it).
    """

    def __init__(self, backend: str, device_index: int = 0, precision: str = "fp32", *,
                 memory_fraction: float | None = None, time_transfers: bool = True) -> None:
        _check_args(backend, device_index, precision, memory_fraction)
        if backend == "torch":
            from tuner.evaluators.gpu_runners import TorchRunner

            runner: Any = TorchRunner(f"cuda:{device_index}", precision, memory_fraction, time_transfers)
        elif backend == TEST_BACKEND:
            from tuner.evaluators.gpu_runners import OrtTestRunner

            runner = OrtTestRunner(precision)
        else:
            if not time_transfers:
                raise field_error("time_transfers", time_transfers, "The ort backend always times host "
                                  "inputs to host outputs.", "Use the torch backend to time the forward pass alone.")
            from tuner.evaluators.gpu_nvml import device_facts
            from tuner.evaluators.gpu_runners import OrtCudaRunner

            total = device_facts(device_index).get("gpu_memory_total_mib") if memory_fraction else None
            limit = int(memory_fraction * total * 2**20) if memory_fraction and total else None
            runner = OrtCudaRunner(device_index, precision, limit)
        self._setup(runner, backend, device_index, precision, memory_fraction)

    @classmethod
    def _on_runner(cls, runner: Any, backend: str, precision: str) -> GpuReplicaBench:
        """A bench over a ready runner, e.g. `TorchRunner("cpu", ...)`: tests run the whole bench
        code path on CPU tensors where no GPU exists."""
        bench = cls.__new__(cls)
        bench._setup(runner, backend, 0, precision, None)
        return bench

    def _setup(self, runner: Any, backend: str, device_index: int, precision: str,
               memory_fraction: float | None) -> None:
        self._runner = runner
        self._backend, self._device_index, self._precision = backend, device_index, precision
        self._memory_fraction = memory_fraction
        self._programs: OrderedDict[str, Any] = OrderedDict()
        self._batch = 0
        self._ready = False

    @contextlib.contextmanager
    def _oom_guard(self, doing: str, batch: int) -> Iterator[None]:
        try:
            yield
        except TunerError:
            raise
        except Exception as exc:
            if not (is_gpu_oom(str(exc)) or isinstance(exc, MemoryError)):
                raise
            self._ready = False
            with contextlib.suppress(Exception):
                self._runner.free()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise GpuOutOfMemoryError(
                f"Got batch_size {batch} at {self._precision} on {self._runner.device} ({self._backend}): "
                f"out of memory while {doing} ({type(exc).__name__}: {first}). The configuration needs more "
                "device memory than this replica has: use a smaller batch, a lower precision, or fewer "
                "replicas per GPU."
            ) from None

    def prepare(self, key: str, model: Any, inputs: tuple[InputSpec, ...], batch_size: int) -> bool:
        """Make `key`'s model current at `batch_size` and run it once (so an out-of-memory batch
        fails here); returns True if the session or module was cached.

        Args:
            key: cache key of the model (e.g. the variant's sha256).
            model: ONNX bytes or path (ort), or a `TorchSource` (torch).
            inputs: the model's inputs (batch dimension excluded).
            batch_size: instances per call.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise field_error("batch_size", batch_size, "It must be an integer >= 1.", "Fix the trial config.")
        cached = key in self._programs
        self._ready = False
        if hasattr(self._runner, "reset_peak"):
            self._runner.reset_peak()
        with self._oom_guard("loading the model", batch_size):
            if cached:
                self._programs.move_to_end(key)
            else:
                while len(self._programs) >= _PROGRAMS_KEPT:
                    self._programs.popitem(last=False)
                self._programs[key] = self._runner.build(model)
        with self._oom_guard("running the first batch", batch_size):
            self._runner.bind(self._programs[key], timing_inputs(inputs, batch_size))
            self._runner.call(batch_size)
        self._batch = batch_size
        self._ready = True
        return cached

    def info(self) -> dict[str, Any]:
        """Where and how this replica measures: GPU name, driver and CUDA versions, memory."""
        from tuner.evaluators.gpu_nvml import device_facts

        on_cpu = str(self._runner.device).startswith("cpu")
        facts = device_facts(self._device_index) if not on_cpu else {}
        out = {
            "node": socket.gethostname(), "pid": os.getpid(), "platform": "gpu",
            "backend": self._backend, "precision": self._precision,
            "device": str(self._runner.device), "device_index": self._device_index,
            "memory_fraction": self._memory_fraction, "timing": self._runner.timing,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # set by Ray for num_gpus actors
            "cpu_ids": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,  # host core(s)
            "transfers_timed": getattr(self._runner, "time_transfers", True), **facts, **self._runner.facts(),
        }
        out.update(self._runner.memory())
        if self._backend == TEST_BACKEND:
            out.update(gpu_memory_peak_mib=None, memory_peak_source="none: the TEST backend runs on the CPU",
                       test_backend=True)
        if "gpu_memory_peak_mib" not in out and "process_memory_mib" in out:
            out.update(gpu_memory_peak_mib=out["process_memory_mib"],
                       memory_peak_source="NVML memory of this process (ONNX Runtime's arena)")
        return out

    def _check_ready(self) -> None:
        if not self._ready:
            raise TunerError("Got a timing call before a successful prepare(). Call prepare(key, model, "
                             "inputs, batch_size) first (it may have failed, e.g. out of memory).")

    def run_for(self, seconds: float, min_calls: int) -> WindowSample:
        """Offline: call the model back to back for at least `seconds` and `min_calls` calls."""
        self._check_ready()
        lat: list[float] = []
        call, batch = self._runner.call, self._batch
        with self._oom_guard("measuring", batch):
            start = time.perf_counter()
            end = start + seconds
            now = start
            while now < end or len(lat) < min_calls:
                lat.append(call(batch))
                now = time.perf_counter()
        return WindowSample(np.asarray(lat), now - start, batch)

    def serve_for(self, seconds: float, rate_rps: float, max_wait_s: float, seed: int) -> WindowSample:
        """Server: Poisson arrivals at `rate_rps` for `seconds`, batched up to batch_size.

        Stops early when requests wait more than 10 s (the replica is overloaded); the window
        then reports what completed, and its throughput shows the shortfall.
        """
        self._check_ready()
        with self._oom_guard("serving", self._batch):
            return serve_poisson(self._runner.call, self._batch, seconds, rate_rps, max_wait_s, seed)


def measure_local_gpu(model: Any, inputs: tuple[InputSpec, ...], batch_size: int, replicas: int,
                      settings: MeasurementSettings, load: LoadSpec, backend: str, precision: str, device_index: int = 0,
                      key: str = "model") -> Any:
    """Measure `replicas` replicas on one GPU as threads of this process (no Ray needed).

    """
    from concurrent.futures import ThreadPoolExecutor

    from tuner.evaluators.windows import run_protocol

    # No memory cap: torch's cap is per process, and these replicas are threads of one process.
    benches = [GpuReplicaBench(backend, device_index, precision) for _ in range(replicas)]
    for b in benches:
        b.prepare(key, model, inputs, batch_size)
    with ThreadPoolExecutor(max_workers=replicas) as pool:
        return run_protocol(thread_broadcast(benches, pool), settings, load)
