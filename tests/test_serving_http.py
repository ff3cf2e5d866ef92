"""serving.app over real HTTP: `serve_foreground` runs Ray's `serve run` on a tiny ONNX model.

The first tests exercise the replica's batching logic on a real ONNX Runtime session without
Ray. The integration tests start a real local Ray cluster in their own session, talk V2 REST
to it, and at the end check that stopping it leaves none of its processes behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

from serving.app import ModelServer, ServeArgs, describe_model, load_session
from serving.serve_config import make_serve_config, write_serve_config
from tuner.errors import TunerError

READY_TIMEOUT_S = 120.0
MODEL = "digits"
BATCH = 4


def _client() -> requests.Session:
    """A session that talks to 127.0.0.1 directly even where http_proxy is set."""
    session = requests.Session()
    session.trust_env = False
    return session


client = _client()


# --- The replica's logic on a real session, without Ray -------------------------------------

def _matmul_model(path: Path, x_shape: list, elem: int = TensorProto.FLOAT) -> np.ndarray:
    """y = x @ w, x of `x_shape` (symbolic dims as strings); returns w."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    np_dtype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, [x_shape[0], 3])],
        [numpy_helper.from_array(w.astype(np_dtype), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return w


def _args(path: Path, batch_size: int = 2, **kw: object) -> ServeArgs:
    return ServeArgs(model_name="m", model_path=str(path), precision="fp32",
                     batch_size=batch_size, threads_per_replica=1, **kw)


class _ChunkSpy:
    """The real session, recording how many instances each run() call got."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.sizes = session, []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.sizes.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)


def test_batch_is_concatenated_run_in_chunks_of_batch_size_and_split_back(tmp_path: Path) -> None:
    w = _matmul_model(tmp_path / "m.onnx", ["N", 4])
    replica = ModelServer(_args(tmp_path / "m.onnx", batch_size=2))
    spy = replica._session = _ChunkSpy(replica._session)
    rng = np.random.default_rng(0)
    requests_ = [{"x": rng.random((n, 4), dtype=np.float32)} for n in (2, 1, 2)]
    results = replica._run_batch(requests_)
    assert spy.sizes == [2, 2, 1]
    for request, result in zip(requests_, results):
        np.testing.assert_allclose(result["y"], request["x"] @ w, rtol=1e-6)


def test_fp16_model_is_served_with_float32_inputs_and_outputs(tmp_path: Path) -> None:
    w = _matmul_model(tmp_path / "h.onnx", ["N", 4], TensorProto.FLOAT16)
    replica = ModelServer(_args(tmp_path / "h.onnx"))
    assert [m.datatype for m in replica._inputs + replica._outputs] == ["FP32", "FP32"]
    x = np.ones((1, 4), dtype=np.float32)
    (result,) = replica._run_batch([{"x": x}])
    assert result["y"].dtype == np.float32
    np.testing.assert_allclose(result["y"], x @ w, rtol=1e-2)


def test_dynamic_instance_dims_need_input_shapes(tmp_path: Path) -> None:
    _matmul_model(tmp_path / "d.onnx", ["N", "L"])
    session = load_session(_args(tmp_path / "d.onnx"))
    with pytest.raises(TunerError, match="input_shapes"):
        describe_model(session, _args(tmp_path / "d.onnx"))
    inputs, _ = describe_model(session, _args(tmp_path / "d.onnx", input_shapes={"x": [4]}))
    assert inputs[0].shape == [-1, 4]
    with pytest.raises(TunerError, match=r"Got \['z'\] for args.input_shapes"):
        describe_model(session, _args(tmp_path / "d.onnx", input_shapes={"z": [4]}))


def test_fixed_batch_dimension_is_refused(tmp_path: Path) -> None:
    _matmul_model(tmp_path / "f.onnx", [2, 4])
    with pytest.raises(TunerError, match="dynamic batch axis"):
        describe_model(load_session(_args(tmp_path / "f.onnx")), _args(tmp_path / "f.onnx"))


# --- A real server ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live processes in session `sid`: the server we started and everything it spawned."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session
            pids.append(int(entry))
    return pids


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    log: Path

    def stop(self) -> tuple[int, list[int]]:
        """SIGINT (as Ctrl-C would), then kill leftovers; returns (exit code, leftover pids)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # our own group: the serve_foreground process
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + 30
        while (left := _session_pids(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in left:  # only processes of the session this test created
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode, left


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "digits.onnx"
    torch.onnx.export(Linear().eval(), (torch.randn(2, 1, 8, 8),), str(path), dynamo=True,
                      external_data=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return path


@pytest.fixture(scope="module")
def server(digits_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    config = make_serve_config(model_name=MODEL, model_path=str(digits_onnx), precision="fp32",
                               batch_size=BATCH, replicas=2, threads_per_replica=1, port=port)
    config_path = write_serve_config(config, work / "serve_config.yaml", comment="integration test")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = work / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from serving.run import serve_foreground; "
             "sys.exit(serve_foreground(Path(sys.argv[1]), address='local'))", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"server exited early:\n{log.read_text()[-4000:]}"
            try:
                if client.get(f"{srv.base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # refused, or held while replicas start
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield srv
    finally:
        srv.stop()


def _infer_body(x: np.ndarray, **extra: object) -> dict:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}], **extra}


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.integration
def test_foreground_runner_prints_the_infer_url_once_ready(server: Server) -> None:
    deadline = time.monotonic() + 10  # the watcher polls every 0.5 s
    while f"POST {server.base}/v2/models/{MODEL}/infer" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.2)


@pytest.mark.integration
def test_health_endpoints(server: Server) -> None:
    assert client.get(f"{server.base}/v2/health/live").status_code == 200
    ready = client.get(f"{server.base}/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert client.get(f"{server.base}/v2/models/{MODEL}/ready").status_code == 200


@pytest.mark.integration
def test_metadata_describes_inputs_outputs_and_deployment(server: Server) -> None:
    meta = client.get(f"{server.base}/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    (output,) = meta["outputs"]
    assert output["datatype"] == "FP32" and output["shape"] == [-1, 10]
    assert meta["parameters"] == {"precision": "fp32", "batch_size": BATCH}


@pytest.mark.integration
@pytest.mark.parametrize("n", [1, 3])
def test_infer_matches_onnxruntime(server: Server, digits_onnx: Path, n: int) -> None:
    x = np.random.default_rng(n).random((n, 1, 8, 8), dtype=np.float32)
    response = client.post(f"{server.base}/v2/models/{MODEL}/infer",
                             json=_infer_body(x, id=f"req-{n}"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL and body["id"] == f"req-{n}"
    (output,) = body["outputs"]
    assert output["shape"] == [n, 10] and output["datatype"] == "FP32"
    got = np.asarray(output["data"], dtype=np.float32).reshape(n, 10)
    assert np.allclose(got, _reference(digits_onnx, x), atol=1e-5)


@pytest.mark.integration
def test_sixteen_concurrent_requests_all_succeed_with_their_own_results(
    server: Server, digits_onnx: Path
) -> None:
    rng = np.random.default_rng(16)
    xs = [rng.random((int(rng.integers(1, BATCH + 1)), 1, 8, 8), dtype=np.float32)
          for _ in range(16)]

    def post(x: np.ndarray) -> requests.Response:
        url = f"{server.base}/v2/models/{MODEL}/infer"
        return _client().post(url, json=_infer_body(x), timeout=60)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(post, xs))
    for x, response in zip(xs, responses):
        assert response.status_code == 200, response.text
        got = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32)
        assert np.allclose(got.reshape(len(x), 10), _reference(digits_onnx, x), atol=1e-5)


def _good() -> dict:
    return _infer_body(np.zeros((1, 1, 8, 8), dtype=np.float32))


def _with(**overrides: object) -> dict:
    body = _good()
    body["inputs"][0].update(overrides)
    return body


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"inputs": [', "not valid JSON"),
        (_with(shape=[1, 64]), ".shape"),
        (_with(datatype="FP64"), ".datatype"),
        ({"inputs": []}, "inputs"),
        (_infer_body(np.zeros((BATCH + 1, 1, 8, 8), dtype=np.float32)), f"at most {BATCH}"),
    ],
    ids=["malformed-json", "wrong-shape", "wrong-datatype", "missing-input", "too-many"],
)
def test_bad_requests_get_400_with_error_and_server_keeps_serving(
    server: Server, body: object, fragment: str
) -> None:
    url = f"{server.base}/v2/models/{MODEL}/infer"
    if isinstance(body, bytes):
        response = client.post(url, data=body)
    else:
        response = client.post(url, json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert client.post(url, json=_good()).status_code == 200


@pytest.mark.integration
def test_unknown_model_gets_404_with_error(server: Server) -> None:
    for response in (client.post(f"{server.base}/v2/models/nope/infer", json=_good()),
                     client.get(f"{server.base}/v2/models/nope")):
        assert response.status_code == 404
        assert "nope" in response.json()["error"]


@pytest.mark.integration
def test_sigint_stops_the_server_and_leaves_no_processes(server: Server) -> None:
    assert _session_pids(server.proc.pid), "the server should be running before we stop it"
    code, leftovers = server.stop()
    assert leftovers == []
    assert code == 0, server.log.read_text()[-3000:]
    with pytest.raises(requests.ConnectionError):
        client.get(f"{server.base}/v2/health/live", timeout=2)
