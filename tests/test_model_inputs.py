"""Inputs as real models have them: batch axes other than 0, fixed (scalar, state) inputs,
outputs batched on another axis, every problem in one error; tuner's copy computes the same."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tuner.errors import TunerError
from tuner.models import accuracy, quiet
from tuner.models.activations import per_instance_bytes
from tuner.models.inputs import ModelOptions, parse_batch_axes, parse_fixed
from tuner.models.onnx_file import cached_fp32
from tuner.models.prepare import prepare_model
from tuner.models.spec import InputSpec
from tuner.models.user_data import load_user_data


def stateful_model(path: Path) -> Path:
    """Shaped like a streaming audio model: audio [batch, n], state [2, batch, 4] (batch on
    axis 1), sr an int64 scalar; out = sum(audio) * sr / 16000, state_out = state + sum(audio)."""
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "n"])
    state = helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4])
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])
    state_out = helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, "batch", 4])
    nodes = [
        helper.make_node("ReduceSum", ["audio", "axes"], ["s"], keepdims=1),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "k"], ["scale"]),
        helper.make_node("Mul", ["s", "scale"], ["out"]),
        helper.make_node("Add", ["state", "s"], ["state_out"]),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes"),
             numpy_helper.from_array(np.array(16000.0, np.float32), "k")]
    graph = helper.make_graph(nodes, "stateful", [audio, state, sr], [out, state_out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(path: Path | str, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_every_problem_of_every_input_is_reported_at_once(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    with pytest.raises(TunerError) as exc:
        cached_fp32(p, ModelOptions())
    msg = str(exc.value)
    assert str(p) in msg and "2 problem(s)" in msg
    assert "--input-shape audio:D" in msg and "--fixed-input sr=VALUE" in msg


def test_the_batch_axis_named_by_the_graph_is_moved_first_and_computes_the_same(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    copy, specs, notes = cached_fp32(p, ModelOptions({"audio": (16,)}, fixed=parse_fixed(["sr=8000"])))
    assert [(s.name, s.shape) for s in specs] == [("audio", (16,)), ("state", (2, 4))]
    assert any("'state': batch axis 1" in n for n in notes) and any("'state_out': batch axis 1" in n for n in notes)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((3, 16)).astype(np.float32)
    state = rng.standard_normal((2, 3, 4)).astype(np.float32)
    want_out, want_state = _run(p, {"audio": audio, "state": state, "sr": np.array(8000, np.int64)})
    got_out, got_state = _run(copy, {"audio": audio, "state": state.transpose(1, 0, 2).copy()})
    np.testing.assert_allclose(got_out, want_out, rtol=1e-6)
    np.testing.assert_allclose(got_state, want_state.transpose(1, 0, 2), rtol=1e-6)


def test_a_fixed_state_is_fed_zeros_sized_by_the_batch(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    copy, specs, notes = cached_fp32(p, ModelOptions({"audio": (16,)}, fixed=parse_fixed(["sr=16000", "state=0"])))
    assert [s.name for s in specs] == ["audio"]
    audio = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    want = _run(p, {"audio": audio, "state": np.zeros((2, 5, 4), np.float32), "sr": np.array(16000, np.int64)})
    got = _run(copy, {"audio": audio})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1].transpose(1, 0, 2), rtol=1e-6)


def test_bad_axes_and_values_are_refused_naming_the_flag(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    with pytest.raises(TunerError, match="--batch-axis state:7 is out of range"):
        cached_fp32(p, ModelOptions({"audio": (16,)}, {"state": 7}, {"sr": 1.0}))
    with pytest.raises(TunerError, match=r"--fixed-input names \['rate'\]"):
        cached_fp32(p, ModelOptions({"audio": (16,)}, fixed={"rate": 1.0, "sr": 1.0}))
    with pytest.raises(TunerError, match="VALUE must be a number"):
        parse_fixed(["sr=fast"])
    with pytest.raises(TunerError, match="K must be an axis index"):
        parse_batch_axes(["state:-1"])


def test_prepare_a_stateful_model_end_to_end(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    lines: list[str] = []
    model = prepare_model(str(p), ModelOptions({"audio": (512,)}, fixed={"sr": 16000.0, "state": 0.0}),
                          {"fp32", "fp16", "int8"}, log=lines.append, floor_ratio=0.99)
    assert set(model.variants) == {"fp32", "fp16", "int8"} and not model.left_out
    assert "audio-like" in model.calibration  # a 512-sample waveform gets audio-like data
    assert any(line.startswith("fidelity (centred-l2) of fp16") and "floor 0.9900" in line for line in lines)
    assert model.interface_notes and model.activation_bytes_per_instance > 0


def test_a_variant_that_fails_to_build_is_left_out_and_the_others_go_on(tmp_path: Path, monkeypatch) -> None:
    from tuner.models import variants

    def broken(*args: object) -> None:
        raise RuntimeError("converter exploded on node Conv_7")

    monkeypatch.setattr(variants, "make_fp16", broken)
    p = stateful_model(tmp_path / "vad.onnx")
    lines: list[str] = []
    model = prepare_model(str(p), ModelOptions({"audio": (64,)}, fixed={"sr": 16000.0, "state": 0.0}),
                          {"fp32", "fp16", "int8"}, log=lines.append)
    assert set(model.variants) == {"fp32", "int8"}
    assert "Conv_7" in model.left_out["fp16"]
    assert any("precision fp16 left out" in line for line in lines)

    from tuner.spec.load import load_space
    from tuner.study.model_fit import model_precisions

    space = model_precisions(load_space("default"), model, lines.append)
    assert "fp16" not in space.platforms.cpu.precision.choices and "int8" in space.platforms.cpu.precision.choices


def test_an_fpga_analysis_failure_leaves_fpga_out_not_the_study(tmp_path: Path, monkeypatch) -> None:
    import tuner.evaluators.fpga as fpga

    def cannot(*args: object) -> None:
        raise TunerError("Got 'unknown shape' for tensor 'h' of node 'Conv_3'.")

    monkeypatch.setattr(fpga, "analyse", cannot)
    p = stateful_model(tmp_path / "vad.onnx")
    model = prepare_model(str(p), ModelOptions({"audio": (64,)}, fixed={"sr": 16000.0, "state": 0.0}),
                          {"fp32", "int8"}, log=lambda s: None)
    from tuner.spec.load import load_space
    from tuner.study.model_fit import fpga_fits

    lines: list[str] = []
    space = fpga_fits(load_space("default"), model, lines.append)
    assert space.platform("fpga") is None and space.platform("cpu") is not None
    assert any("'fpga' left out" in line and "Conv_3" in line for line in lines)


def test_fidelity_kinds_can_fail() -> None:
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((4, 6, 5))]
    assert accuracy.fidelity_of("sequence", ref, ref) == 1.0
    shuffled = [ref[0][:, :, ::-1]]
    assert accuracy.fidelity_of("sequence", shuffled, ref) < 0.5
    emb = [rng.standard_normal((8, 16))]
    assert accuracy.fidelity_of("cosine", emb, emb) == pytest.approx(1.0)
    assert accuracy.fidelity_of("cosine", [-emb[0]], emb) == 0.0
    softmax = np.exp(ref[0]) / np.exp(ref[0]).sum(-1, keepdims=True)
    assert accuracy.auto_kind([softmax]) == "sequence"
    assert accuracy.auto_kind(ref) == "centred-l2"  # [T, C] but not a distribution: a detection head, say
    assert accuracy.auto_kind([rng.standard_normal((4, 1000))]) == "centred-l2"


def test_user_calibration_data_is_checked_and_never_unpickled(tmp_path: Path) -> None:
    specs = (InputSpec("audio", (16,), "float32"),)
    good = tmp_path / "good.npz"
    np.savez(good, audio=np.ones((6, 16), np.float32))
    cal, ev = load_user_data(good, specs)
    assert len(cal["audio"]) == 3 and len(ev["audio"]) == 3
    bad = tmp_path / "bad.npz"
    np.savez(bad, audio=np.ones((6, 15), np.float32), extra=np.ones(2))
    with pytest.raises(TunerError, match=r"shape \[6, 15\].*must be \[N, 16\]") as exc:
        load_user_data(bad, specs)
    assert "'extra' names no model input" in str(exc.value)
    objects = tmp_path / "objects.npz"
    np.savez(objects, audio=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(TunerError, match="object arrays are refused"):
        load_user_data(objects, specs)


def test_runtime_warnings_go_to_the_log_file(tmp_path: Path, capfd) -> None:
    log = tmp_path / "ort.log"
    with quiet.warnings_to(log):
        os.write(2, b"[W:onnxruntime] a warning from C++\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "a warning from C++" not in err and "after" in err
    assert "a warning from C++" in log.read_text() and quiet.line_count(log) == 1


def test_activation_memory_comes_from_the_graph(tmp_path: Path) -> None:
    p = stateful_model(tmp_path / "vad.onnx")
    copy, _, _ = cached_fp32(p, ModelOptions({"audio": (1000,)}, fixed={"sr": 16000.0, "state": 0.0}))
    peak, total = per_instance_bytes(onnx.load(str(copy)))
    assert 4000 <= peak <= total  # the 1000-float audio instance is alive at the first node


def test_memory_prediction_refuses_what_cannot_fit() -> None:
    from tuner.config import TrialConfig
    from tuner.runner.memory_fit import largest_batch, predict, trial_budget_bytes, why_not_fits

    gib = 2**30
    small = predict(TrialConfig("cpu", 4, "fp32", 2, 1), 10 * 2**20, 5 * 2**20)
    assert why_not_fits(small, [8 * gib]) is None
    big = predict(TrialConfig("cpu", 256, "fp32", 1, 1), 42 * 2**20, 5 * 2**20)  # 3 x 42 MiB x 256 = 31.5 GiB
    reason = why_not_fits(big, [16 * gib])
    assert reason is not None and "per replica" in reason and "smaller batch" in reason
    many = predict(TrialConfig("cpu", 16, "fp32", 8, 1), 42 * 2**20, 5 * 2**20)  # 2.2 GiB x 8
    assert "8 replicas" in (why_not_fits(many, [10 * gib]) or "")
    assert "trial memory budget 4.0 GiB" in (why_not_fits(many, [64 * gib], 4 * gib) or "")
    assert trial_budget_bytes(None, [16 * gib]) == 4 * gib and trial_budget_bytes(2.0, [16 * gib]) == 2 * gib
    assert largest_batch([1, 2, 4, 8, 16, 32], 42 * 2**20, 5 * 2**20, 4 * gib) == 16
    assert largest_batch([64], 42 * 2**20, 5 * 2**20, 4 * gib) is None


def test_a_folder_of_images_calibrates_an_image_model(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((40, 30, 3), 50 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image, skipped")
    cal, ev = load_user_data(folder, (InputSpec("x", (3, 16, 24), "float32"),))
    assert cal["x"].shape == (3, 3, 16, 24) and ev["x"].shape == (2, 3, 16, 24)
    assert cal["x"][0, 0].std() == pytest.approx(0, abs=1e-6) and cal["x"][0].mean() != cal["x"][1].mean()
    with pytest.raises(TunerError, match="one image-shaped input"):
        load_user_data(folder, (InputSpec("audio", (512,), "float32"),))


def test_the_command_line_reports_every_input_problem_before_anything_starts(tmp_path: Path) -> None:
    from helpers import tuner

    p = stateful_model(tmp_path / "vad.onnx")
    out = tuner(tmp_path, "tune", "--model", str(p), "--trials", "1", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--input-shape audio:D" in out.stderr and "--fixed-input sr=VALUE" in out.stderr
    assert "Ray" not in out.stdout  # refused before a cluster starts


def test_estimate_runs_a_stateful_model_with_its_flags(tmp_path: Path) -> None:
    """`tuner estimate` (no Ray): the FPGA model prices tuner's copy of a three-input model."""
    import json

    from helpers import tuner

    p = stateful_model(tmp_path / "vad.onnx")
    out = tuner(tmp_path, "estimate", "--model", str(p), "--input-shape", "audio:512", "--fixed-input", "sr=16000",
                "--fixed-input", "state=0", "--device", "zcu104", "--batch-size", "4", "--json", timeout=300,
                env={**os.environ, "TUNER_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["metrics"]["estimated"] is True and record["metrics"]["throughput_rps"] > 0


def test_every_input_recipe_gives_an_embedding_valid_ids() -> None:
    """Calibration, the bench and the served load make integer inputs the same way: a model that
    indexes a 2-row token-type table with token_type_ids gets 0s everywhere (a stopped study found it)."""
    import json

    from serving.request import make_payloads
    from tuner.evaluators.base import timing_inputs
    from tuner.models.data import synthetic_inputs

    specs = (InputSpec("input_ids", (8,), "int64"), InputSpec("attention_mask", (8,), "int64"),
             InputSpec("token_type_ids", (8,), "int64"))
    for feeds in (synthetic_inputs(specs, 4, seed=0), timing_inputs(specs, 4)):
        assert (feeds["token_type_ids"] == 0).all() and (feeds["attention_mask"] == 1).all()
        assert feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < 10
    body, _ = make_payloads(specs, 2, binary=False, seed=0)[0]
    sent = {t["name"]: t["data"] for t in json.loads(body)["inputs"]}
    assert set(np.asarray(sent["token_type_ids"]).ravel()) == {0} and set(np.asarray(sent["attention_mask"]).ravel()) == {1}


def test_a_time_major_input_gets_its_batch_axis_from_the_symbol_name(tmp_path: Path) -> None:
    """x [seq, batch, 4] (an RNN's time-major layout): the axis named 'batch' is the batch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", "batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    p = tmp_path / "rnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    copy, specs, notes = cached_fp32(p, ModelOptions({"x": (6, 4)}))
    assert specs[0].shape == (6, 4) and any("'x': batch axis 1" in n for n in notes)
    data = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(np.float32)
    (got,) = _run(copy, {"x": data})
    np.testing.assert_allclose(got, np.maximum(data, 0))  # batch first in, batch first out
