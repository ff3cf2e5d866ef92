"""Plain helpers the tests share (fixtures over them live in conftest.py): a free port, the
`tuner` CLI as a subprocess, tiny ONNX models built in code, small search spaces."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from onnx import TensorProto, helper, numpy_helper

from serving.ingress import haproxies_below
from serving.run import READY_GAP_S, READY_IN_A_ROW
from tuner.evaluators.gpu_bench import GpuReplicaBench
from tuner.evaluators.gpu_runners import TorchRunner
from tuner.evaluators.gpu_torch_models import TorchSource
from tuner.models.spec import InputSpec

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tuner(workdir: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    """`python -m tuner ARGS` in `workdir`, output captured."""
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env if env is not None else os.environ.copy())


def start_tuner(workdir: Path, *args: str) -> subprocess.Popen:
    """`python -m tuner ARGS` in the background, in its own session (so it can be signalled)."""
    return subprocess.Popen([sys.executable, "-m", "tuner", *args], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def tiny_cnn(channels: int = 32, size: int = 32) -> bytes:
    """Conv 3x3 (3 -> channels) + Relu + GlobalAveragePool + Flatten + Gemm(channels -> 10), dynamic batch."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((10, channels)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


#: A CPU-only search space: fp32 and fp16, batches 1-4, one or two replicas of one thread,
#: measured at the engine level (the served level has its own tests).
CPU_SPACE = """\
measure: engine
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32, fp16]}
    batch_size: {type: int, low: 1, high: 4, pow2: true}
    replicas: {type: int, low: 1, high: 2}
    threads_per_replica: {type: int, low: 1, high: 1}
"""


def write_space(directory: Path, text: str = CPU_SPACE, name: str = "space.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# The GPU bench's whole code path on CPU tensors (torch backend).

DIGITS_INPUTS = (InputSpec("x", (1, 8, 8), "float32"),)


def digits_source() -> tuple[TorchSource, dict]:
    import torch

    from tuner.models import digits

    torch.manual_seed(3)
    state = digits.DigitsCNN().state_dict()
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in state.items()})
    return TorchSource("digits-cnn", buf.getvalue()), state


def cpu_bench(precision: str = "fp32") -> GpuReplicaBench:
    return GpuReplicaBench._on_runner(TorchRunner("cpu", precision), "torch", precision)


class OomAbove(TorchRunner):
    """A CPU runner that raises the allocator's error above a batch: isolates the mapping logic."""

    def __init__(self, limit: int, error: Exception) -> None:
        super().__init__("cpu", "fp32")
        self.limit, self.error = limit, error

    def call(self, take: int) -> float:
        if take > self.limit:
            raise self.error
        return super().call(take)


def stop(proc: subprocess.Popen) -> str:
    """End a process started by `start_tuner` (SIGINT to its group, SIGKILL after 30 s); its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait until `url` answers 200 READY_IN_A_ROW times in a row (READY_GAP_S apart) while
    `proc` runs, and no reloaded HAProxy's old process still drains below it: as `tuner serve`
    does before it announces the endpoint (serving.run: HAProxy's reload)."""
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{proc.stdout.read()}")
        try:
            in_a_row = in_a_row + 1 if requests.get(url, timeout=2).status_code == 200 else 0
        except requests.RequestException:
            in_a_row = 0
        if in_a_row >= READY_IN_A_ROW and haproxies_below(proc.pid) <= 1:  # no old HAProxy draining
            return
        time.sleep(READY_GAP_S if in_a_row else 0.5)
    raise AssertionError(f"{url} not ready after {timeout_s} s")
