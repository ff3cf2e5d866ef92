"""User ONNX files: bad input is refused with a message that names the problem and the fix."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tuner.errors import TunerError
from tuner.models.inputs import ModelOptions
from tuner.models.onnx_file import cached_fp32, load_checked, parse_input_shapes
from tuner.models.prepare import prepare_model


def tiny_model(path: Path, dims: list, with_weight_file: str | None = None) -> Path:
    """y = relu(x @ W) over the last dim (8 -> 4), input dims as given."""
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "W")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [*dims[:-1], 4])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if with_weight_file:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=with_weight_file, size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def test_missing_dynamic_dim_names_the_input(tmp_path: Path) -> None:
    p = tiny_model(tmp_path / "m.onnx", ["batch", "seq", 8])
    with pytest.raises(TunerError) as exc:
        cached_fp32(p, ModelOptions())
    assert "'x'" in str(exc.value) and "--input-shape x:" in str(exc.value) and exc.value.exit_code == 2
    assert str(p) in str(exc.value)  # the user's file, not tuner's cached copy


def test_input_shape_fixes_the_dynamic_dim_and_keeps_a_dynamic_batch(tmp_path: Path) -> None:
    p = tiny_model(tmp_path / "m.onnx", ["batch", "seq", 8])
    out, specs, notes = cached_fp32(p, ModelOptions(parse_input_shapes(["x:5,8"])))
    assert specs[0].shape == (5, 8) and specs[0].dtype == "float32"
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [5, 8]


def test_prepare_builds_every_variant_for_a_user_onnx_file(tmp_path: Path) -> None:
    p = tiny_model(tmp_path / "m.onnx", ["batch", 8])
    model = prepare_model(str(p), ModelOptions(), {"fp32", "fp16", "int8"}, log=lambda s: None)
    assert set(model.variants) == {"fp32", "fp16", "int8"}
    assert model.accuracy_metric == "fidelity" and model.variants["fp32"].accuracy == 1.0
    assert 0.9 < model.variants["fp16"].accuracy <= 1.0


@pytest.mark.parametrize("arg", ["x", "x:", "x:3,a", "x:0,3", ":3"])
def test_malformed_input_shape_is_refused(arg: str) -> None:
    with pytest.raises(TunerError, match="NAME:D1,D2"):
        parse_input_shapes([arg])


def test_wrong_rank_and_unknown_input_are_refused(tmp_path: Path) -> None:
    p = tiny_model(tmp_path / "m.onnx", ["batch", "seq", 8])
    with pytest.raises(TunerError, match="give 2 value"):
        cached_fp32(p, ModelOptions({"x": (5,)}))
    with pytest.raises(TunerError, match=r"the inputs of m.onnx are \['x'\]"):
        cached_fp32(p, ModelOptions({"y": (5, 8)}))


def test_not_a_file_not_onnx_truncated_and_pickle(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="not a file"):
        load_checked(tmp_path / "absent.onnx")
    (tmp_path / "text.onnx").write_text("hello, I am not a model\n" * 10)
    with pytest.raises(TunerError, match="not a readable ONNX model|empty graph"):
        load_checked(tmp_path / "text.onnx")
    good = tiny_model(tmp_path / "good.onnx", ["batch", 8]).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(TunerError, match="truncated|not a readable|not a valid|empty graph"):
        load_checked(tmp_path / "cut.onnx")
    (tmp_path / "model.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with pytest.raises(TunerError, match="never unpickles"):
        load_checked(tmp_path / "model.pt")


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    p = tiny_model(inner / "m.onnx", ["batch", 8], with_weight_file="w.bin")
    model = onnx.load(str(p), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save(model, str(p))
    with pytest.raises(TunerError, match="outside"):
        load_checked(p)


def _reshape_to_1x8(path: Path, batch: str | int) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    shape = numpy_helper.from_array(np.array([1, 8], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_batch_that_breaks_at_2_is_refused_with_the_fix(tmp_path: Path) -> None:
    """The input says its batch is dynamic, but a Reshape to a hard-coded [1, 8] breaks at batch 2."""
    p = _reshape_to_1x8(tmp_path / "liar.onnx", "batch")
    with pytest.raises(TunerError, match="does not run with a batch of 2.*dynamic batch axis") as exc:
        prepare_model(str(p), ModelOptions(), {"fp32"}, log=lambda s: None)
    assert str(p) in str(exc.value) and "fp32.onnx" not in str(exc.value)


def test_a_model_that_fixes_its_batch_to_1_is_tuned_at_batch_1(tmp_path: Path) -> None:
    from tuner.spec.load import load_space
    from tuner.study.model_fit import model_batch

    p = _reshape_to_1x8(tmp_path / "one.onnx", 1)
    model = prepare_model(str(p), ModelOptions(), {"fp32"}, log=lambda s: None)
    assert model.max_batch == 1 and any("batch to 1" in n for n in model.interface_notes)
    lines: list[str] = []
    space = model_batch(load_space("default"), model, lines.append)
    assert space.platforms.cpu.batch_size.high == 1 and space.platforms.fpga.batch_size.high == 1
    assert any("batch sizes above 1 left out" in line for line in lines)


def test_a_model_shipped_in_a_dependency_is_refused_clearly(tmp_path: Path) -> None:
    """onnxruntime ships logreg_iris.onnx (scikit-learn, input [3, 2]: a batch fixed to 3)."""
    import onnxruntime

    p = Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"
    with pytest.raises(TunerError) as exc:
        prepare_model(str(p), ModelOptions(), {"fp32"}, log=lambda s: None)
    msg = str(exc.value)
    assert str(p) in msg and "fixes its batch axis 0 to 3" in msg and "--batch-axis float_input:K" in msg


def test_string_inputs_and_map_outputs_are_refused_together(tmp_path: Path) -> None:
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    seq = helper.make_tensor_sequence_value_info("probs", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["probs"])], "g", [text, x], [seq])
    p = tmp_path / "pipeline.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    with pytest.raises(TunerError) as exc:
        cached_fp32(p, ModelOptions())
    msg = str(exc.value)
    assert "2 problem(s)" in msg and "'probs' is a sequence_type, not a tensor" in msg and "'text' is not a numeric" in msg
