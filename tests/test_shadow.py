"""Accuracy in production (`serving.shadow`, ``tuner promote --shadow-fraction``): a replica also runs a
sampled share of live instances through the fp32 model and counts top-1 agreement.

The models: fp32 is y = x @ I (4 classes); the "served" one swaps classes 2 and 3, so it agrees with
fp32 exactly on the instances whose top class is 0 or 1. The tests before "A real server" build the
replica without Ray; the last one runs the real application and reads Ray's metrics endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from serving.args import ServeArgs, ServeSettings
from serving.options import ServedModel, ServingOptions
from serving.replica import ModelServer
from serving.serve_config import make_serve_config, write_serve_config
from serving.serve_config_check import load_serve_config
from serving.shadow import MAX_PENDING_BATCHES, Shadow, top1_agreement
from tuner.cli import main
from tuner.config import TrialConfig
from tuner.deploy.promote import parse_shadow_fraction, shadow_options
from tuner.errors import TunerError
from tuner.models.spec import InputSpec, PreparedModel, Variant

from helpers import free_port
from servers import Server, client, metrics_texts, start_server

SWAP_2_3 = np.eye(4, dtype=np.float32)[[0, 1, 3, 2]]


def _linear(path: Path, w: np.ndarray, input_name: str = "x") -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "w"], ["y"])], "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    """(served, fp32): the served model disagrees with fp32 on classes 2 and 3."""
    return _linear(tmp_path / "int8.onnx", SWAP_2_3), _linear(tmp_path / "fp32.onnx", np.eye(4, dtype=np.float32))


def _instances(classes: list[int], seed: int = 0) -> np.ndarray:
    """One instance per class: that class scores 1, the others under 0.5."""
    x = np.random.default_rng(seed).random((len(classes), 4), dtype=np.float32) * 0.5
    x[np.arange(len(classes)), classes] = 1.0
    return x


def _replica(served: Path, fp32: Path | None, fraction: float, batch_size: int = 4) -> ModelServer:
    settings = ServeSettings(model_path=str(served), precision="int8", batch_size=batch_size, threads_per_replica=1,
                             shadow_fraction=fraction, shadow_model_path=str(fp32) if fp32 else None)
    return ModelServer(ServeArgs(model_name="m"), settings)


class _Recorded:
    """Replaces ServerMetrics.shadow on a replica: the (compared, agreed) of every call."""

    def __init__(self, replica: ModelServer) -> None:
        self.calls: list[tuple[int, int]] = []
        assert replica._metrics is not None
        replica._metrics.shadow = lambda c, a: self.calls.append((c, a))  # type: ignore[method-assign]

    def totals(self) -> tuple[int, int]:
        return sum(c for c, _ in self.calls), sum(a for _, a in self.calls)


def _serve(replica: ModelServer, batches: list[list[np.ndarray]]) -> list[list[dict[str, np.ndarray]]]:
    """What `_infer_batch` does after each batch's results (the shadow's offer), then drain the shadow."""
    async def go() -> list[list[dict[str, np.ndarray]]]:
        out = []
        for batch in batches:
            requests_ = [{"x": x} for x in batch]
            results = replica._run_batch(requests_)
            assert replica._shadow is not None
            replica._shadow.offer(requests_, results, "y")
            out.append(results)
            await asyncio.sleep(0)
        assert replica._shadow is not None
        await replica._shadow.drain()
        return out
    return asyncio.run(go())


# --- The comparison -------------------------------------------------------------------------

def test_top1_agreement_compares_argmax_over_the_last_axis() -> None:
    reference = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    served = np.array([[0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    assert top1_agreement(served, reference).tolist() == [True, False, False]
    # (instances, positions, classes): an instance agrees only at every position
    seq_ref = np.array([[[1, 0], [0, 1]], [[1, 0], [0, 1]]])
    seq_served = np.array([[[1, 0], [0, 1]], [[1, 0], [1, 0]]])
    assert top1_agreement(seq_served, seq_ref).tolist() == [True, False]
    with pytest.raises(ValueError, match="same shape"):
        top1_agreement(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="classes"):
        top1_agreement(np.zeros(3), np.zeros(3))


# --- The replica, without Ray ----------------------------------------------------------------

def test_fraction_one_compares_every_instance_and_counts_those_that_agree(models: tuple[Path, Path]) -> None:
    served, fp32 = models
    replica = _replica(served, fp32, 1.0)
    recorded = _Recorded(replica)
    classes = [[0, 2, 1], [3], [1, 1, 2, 0], [3, 3]]  # top class 0 or 1: agrees; 2 or 3: does not
    batches = [[_instances(c, seed=i) for i, c in enumerate(classes[:2])],
               [_instances(c, seed=i) for i, c in enumerate(classes[2:])]]
    results = _serve(replica, batches)
    total = sum(map(len, classes))
    agreeing = sum(c in (0, 1) for cs in classes for c in cs)
    assert (total, agreeing) == (10, 5)
    assert recorded.totals() == (total, agreeing) and len(recorded.calls) == 2
    assert replica._shadow is not None
    assert (replica._shadow.compared_instances, replica._shadow.agreed_instances) == (total, agreeing)
    for batch, outs in zip(batches, results):  # the answers are the served model's, untouched
        for x, out in zip(batch, outs):
            np.testing.assert_array_equal(out["y"], x @ SWAP_2_3)


def test_the_same_model_as_shadow_agrees_on_every_instance(models: tuple[Path, Path]) -> None:
    _, fp32 = models
    replica = _replica(fp32, fp32, 1.0)
    recorded = _Recorded(replica)
    _serve(replica, [[_instances([0, 1, 2, 3]), _instances([3, 2])]])
    assert recorded.totals() == (6, 6)


def test_fraction_zero_loads_no_second_session_and_counts_nothing(models: tuple[Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    loaded: list[str] = []
    real = ort.InferenceSession

    def counted(path: str, *args: object, **kw: object) -> ort.InferenceSession:
        loaded.append(Path(path).name)
        return real(path, *args, **kw)

    served, fp32 = models
    monkeypatch.setattr(ort, "InferenceSession", counted)
    for replica in (_replica(served, None, 0.0), _replica(served, fp32, 0.0)):
        assert replica._shadow is None
        recorded = _Recorded(replica)
        assert len(replica._run_batch([{"x": _instances([2, 3])}])) == 1
        assert recorded.calls == []
    assert loaded == ["int8.onnx", "int8.onnx"]  # the served model's, twice; never the fp32 one
    assert isinstance(_replica(served, fp32, 0.5)._shadow, Shadow) and loaded[-2:] == ["int8.onnx", "fp32.onnx"]


def test_a_fraction_samples_instances_with_the_replicas_seeded_rng(models: tuple[Path, Path]) -> None:
    served, fp32 = models
    replica = _replica(served, fp32, 0.3)
    recorded = _Recorded(replica)
    assert replica._shadow is not None
    replica._shadow.rng = random.Random(7)
    classes = [i % 4 for i in range(40)]
    batches = [[_instances(classes[i:i + 4], seed=i)] for i in range(0, 40, 4)]
    _serve(replica, batches)
    draws = random.Random(7)
    picked = [c for c in classes if draws.random() < 0.3]
    assert 0 < len(picked) < 40
    assert recorded.totals() == (len(picked), sum(c in (0, 1) for c in picked))


def test_reconfigure_keeps_the_shadow_session_and_a_zero_fraction_removes_it(models: tuple[Path, Path]) -> None:
    served, fp32 = models
    replica = _replica(served, fp32, 1.0)
    shadow = replica._shadow
    assert shadow is not None
    base = {"model_path": str(served), "precision": "int8", "batch_size": 4, "threads_per_replica": 1,
            "shadow_model_path": str(fp32)}
    replica.reconfigure({**base, "shadow_fraction": 0.25})
    assert replica._shadow is shadow and shadow.fraction == 0.25
    replica.reconfigure({**base, "shadow_fraction": 0.0})
    assert replica._shadow is None


def test_a_shadow_that_falls_behind_drops_samples_instead_of_queueing(models: tuple[Path, Path]) -> None:
    served, fp32 = models
    replica = _replica(served, fp32, 1.0)
    recorded = _Recorded(replica)
    shadow = replica._shadow
    assert shadow is not None

    async def burst() -> None:  # offers with no await between them: the shadow cannot keep up
        for i in range(MAX_PENDING_BATCHES + 5):
            requests_ = [{"x": _instances([0, 2], seed=i)}]
            shadow.offer(requests_, replica._run_batch(requests_), "y")
        await shadow.drain()

    asyncio.run(burst())
    assert shadow.dropped_instances == 5 * 2
    assert recorded.totals() == (MAX_PENDING_BATCHES * 2, MAX_PENDING_BATCHES)


def test_a_failing_shadow_is_logged_once_and_never_reaches_the_request(models: tuple[Path, Path]) -> None:
    served, fp32 = models
    replica = _replica(served, fp32, 1.0)
    recorded = _Recorded(replica)
    assert replica._shadow is not None

    class Broken:
        def run(self, *_args: object) -> None:
            raise RuntimeError("fp32 session broke")

    replica._shadow._session = Broken()  # type: ignore[assignment]
    logged: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ray.serve").addHandler(handler)  # Ray's logger does not propagate to caplog's
    try:
        results = _serve(replica, [[_instances([0, 1])], [_instances([2])], [_instances([3])]])
    finally:
        logging.getLogger("ray.serve").removeHandler(handler)
    assert [len(r) for r in results] == [1, 1, 1]
    assert recorded.calls == [] and replica._shadow.compared_instances == 0
    assert logged == ["The fp32 shadow failed; its batch is not counted (logged once)."]


def test_a_shadow_model_with_other_inputs_or_no_file_stops_the_replica(models: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    served, _ = models
    other = _linear(tmp_path / "other.onnx", np.eye(4, dtype=np.float32), input_name="z")
    with pytest.raises(TunerError, match=r"takes inputs \['z'\].*not the same model"):
        _replica(served, other, 1.0)
    with pytest.raises(TunerError, match="Got .*absent.onnx.* for user_config.shadow_model_path"):
        _replica(served, tmp_path / "absent.onnx", 1.0)
    with pytest.raises(TunerError, match="shadow_model_path"):
        Shadow(str(tmp_path / "absent.onnx"), 1.0, ["x"], 4, lambda c, a: None)


# --- The settings and promote's checks -------------------------------------------------------

def _settings(**kw: object) -> ServeSettings:
    return ServeSettings(model_path="/m/int8.onnx", precision="int8", batch_size=2, threads_per_replica=1, **kw)


@pytest.mark.parametrize(("kw", "match"), [
    ({"shadow_fraction": 0.5}, "without shadow_model_path.*Set shadow_model_path"),
    ({"shadow_fraction": 1.5, "shadow_model_path": "/m/fp32.onnx"}, "less than or equal to 1"),
    ({"shadow_fraction": -0.1, "shadow_model_path": "/m/fp32.onnx"}, "greater than or equal to 0"),
    ({"shadow_fraction": 0.5, "shadow_model_path": "fp32.onnx"}, "absolute path to the fp32"),
    ({"shadow_fraction": 0.5, "shadow_model_path": "/m/fp32.pt"}, "absolute path to the fp32"),
])
def test_settings_refuse_a_bad_shadow_with_the_fix(kw: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _settings(**kw)
    assert _settings().shadow_fraction == 0.0 and _settings().shadow_model_path is None


def test_the_serve_config_carries_the_shadow_and_its_loader_checks_the_file(models: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    served, fp32 = models
    options = ServingOptions(shadow_fraction=0.1, shadow_model_path=str(fp32))
    config = make_serve_config(TrialConfig("cpu", 2, "int8", 1, 1), ServedModel("m", str(served)), options)
    user_config = config["applications"][0]["deployments"][0]["user_config"]
    assert (user_config["shadow_fraction"], user_config["shadow_model_path"]) == (0.1, str(fp32))
    path = write_serve_config(config, tmp_path / "serve_config.yaml")
    assert load_serve_config(path) == config
    fp32.unlink()
    with pytest.raises(TunerError, match="shadow_model_path in .*does not exist"):
        load_serve_config(path)
    with pytest.raises(TunerError, match="shadow_model_path"):
        make_serve_config(TrialConfig("cpu", 2, "int8", 1, 1), ServedModel("m", str(served)),
                          ServingOptions(shadow_fraction=0.1))


@pytest.mark.parametrize("value", ["0", "-0.5", "1.01", "nan", "inf", "five", ""])
def test_a_bad_shadow_fraction_names_the_flag_the_value_the_rule_and_the_fix(value: str) -> None:
    with pytest.raises(TunerError) as error:
        parse_shadow_fraction(value)
    message = str(error.value)
    assert f"Got {value!r} for --shadow-fraction" in message
    assert "(0, 1]" in message and "Pass e.g. 0.05" in message


def test_a_good_shadow_fraction_is_parsed() -> None:
    assert parse_shadow_fraction(None) is None
    assert parse_shadow_fraction("1") == 1.0 and parse_shadow_fraction("0.05") == 0.05


def test_promote_cli_refuses_a_bad_shadow_fraction_and_writes_nothing(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="s", storage=storage)
    out = tmp_path / "serve_config.yaml"
    assert main(["promote", "--study", "s", "--storage", storage, "--out", str(out), "--shadow-fraction", "2"]) == 2
    assert "Got '2' for --shadow-fraction" in capsys.readouterr().err
    assert not out.exists()


def _prepared(fp32: Path) -> PreparedModel:
    return PreparedModel("m", "builtin", (InputSpec("x", (4,), "float32"),), "fidelity", "",
                         {"fp32": Variant("fp32", str(fp32), "0" * 64, 1.0)})


def test_promote_refuses_a_shadow_on_an_fp32_trial_and_points_int8_at_the_fp32_file(models: tuple[Path, Path]) -> None:
    _, fp32 = models
    with pytest.raises(TunerError, match=r"Got 0\.1 for --shadow-fraction. Trial #3 serves fp32.*measures nothing"):
        shadow_options(0.1, TrialConfig("cpu", 2, "fp32", 1, 1), 3, _prepared(fp32))
    assert shadow_options(0.1, TrialConfig("cpu", 2, "int8", 1, 1), 3, _prepared(fp32)) == {
        "shadow_fraction": 0.1, "shadow_model_path": str(fp32.resolve())}
    assert shadow_options(None, TrialConfig("cpu", 2, "fp32", 1, 1), 3, _prepared(fp32)) == {}
    fp32.unlink()
    with pytest.raises(TunerError, match="fp32 variant's file .* is missing"):
        shadow_options(0.1, TrialConfig("cpu", 2, "int8", 1, 1), 3, _prepared(fp32))


# --- A real server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("shadow")
    served, fp32 = _linear(work / "int8.onnx", SWAP_2_3), _linear(work / "fp32.onnx", np.eye(4, dtype=np.float32))
    config = make_serve_config(TrialConfig("cpu", 4, "int8", 1, 1), ServedModel("m", str(served)),
                               ServingOptions(port=free_port(), shadow_fraction=1.0, shadow_model_path=str(fp32)))
    srv = start_server(config, work)
    try:
        yield srv
    finally:
        _, leftovers = srv.stop()
        assert leftovers == []


def _metrics_texts(srv: Server) -> list[str]:
    """The Ray /metrics texts of the server's listening ports."""
    return list(metrics_texts(srv, timeout_s=2.0).values())


def _counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'model="m"' in line)


@pytest.mark.integration
def test_a_real_server_exports_shadow_agreement_on_rays_metrics_endpoint(server: Server) -> None:
    classes = [i % 4 for i in range(24)]  # half of them (classes 0 and 1) agree with fp32
    for start in range(0, 24, 3):
        x = _instances(classes[start:start + 3], seed=start)
        response = client.post(f"{server.base}/v2/models/m/infer", timeout=10, json={"inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
        assert response.status_code == 200, response.text
        (out,) = response.json()["outputs"]
        np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), x @ SWAP_2_3)
    deadline, seen = time.monotonic() + 45, [(0.0, 0.0)]
    while (24, 12) not in seen:  # Ray exports every few seconds
        assert time.monotonic() < deadline, f"shadow counters (compared, agreed) per port {seen}, expected (24, 12)"
        time.sleep(2)
        seen = [(_counter(text, "ray_tuner_infer_shadow_instances_total"),
                 _counter(text, "ray_tuner_infer_shadow_agreed_total")) for text in _metrics_texts(server)]
