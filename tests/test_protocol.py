"""serving.protocol: V2 request parsing and response formatting (pure, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.protocol import (
    InputMeta,
    ProtocolError,
    TensorMeta,
    decode_body,
    format_infer_response,
    parse_infer_request,
    requested_outputs,
    v2_datatype,
)
from tuner.errors import TunerError

X = InputMeta("x", "FP32", [-1, 1, 2, 2])


def _request(n: int = 2, **overrides: object) -> dict:
    entry = {"name": "x", "shape": [n, 1, 2, 2], "datatype": "FP32",
             "data": [float(i) for i in range(4 * n)]}
    entry.update(overrides)
    return {"inputs": [entry]}


def test_flat_request_parses_to_typed_array_of_declared_shape() -> None:
    tensors = parse_infer_request(json.dumps(_request(2)).encode(), [X], max_instances=4)
    assert list(tensors) == ["x"]
    assert tensors["x"].dtype == np.float32 and tensors["x"].shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(tensors["x"].ravel(), np.arange(8, dtype=np.float32))


def test_nested_data_equals_flat_data() -> None:
    nested = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2).tolist()
    flat = parse_infer_request(_request(2), [X], 4)["x"]
    np.testing.assert_array_equal(parse_infer_request(_request(2, data=nested), [X], 4)["x"], flat)


def test_integer_json_values_are_accepted_for_float_inputs() -> None:
    tensors = parse_infer_request(_request(1, data=[0, 1, 2, 3]), [X], 4)
    assert tensors["x"].dtype == np.float32


def test_multiple_inputs_and_optional_keys() -> None:
    ids = InputMeta("ids", "INT64", [-1, 3])
    body = {"id": "r1", "parameters": {}, "inputs": [
        {"name": "ids", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3, 4, 5, 6],
         "parameters": {}},
        _request(2)["inputs"][0]]}
    tensors = parse_infer_request(body, [X, ids], 4)
    assert tensors["ids"].dtype == np.int64 and tensors["ids"].shape == (2, 3)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [{"name": "x"}]}, "missing ['shape', 'datatype', 'data']"),
        ({"inputs": [], "extra": 1}, "Allowed keys"),
        ({"id": 7, "inputs": []}, "request id must be a string"),
        (_request(2, name="y"), "The model's inputs are ['x']"),
        (_request(2, shape=[2, 1, 2, 3]), "takes shape [n, 1, 2, 2]"),
        (_request(2, shape=[2, 4]), "takes shape [n, 1, 2, 2]"),
        (_request(2, shape="2,1,2,2"), "must be a list of integers"),
        (_request(2, datatype="FP64"), "takes datatype 'FP32'"),
        (_request(2, data=[1.0, "a", 2.0, 3.0] * 2), "takes numbers only"),
        (_request(2, data=[None] * 8), "takes numbers only"),
        (_request(2, data=[1.0, 2.0, 3.0]), "needs 8 values"),
        (_request(2, data=[[1.0, 2.0], [3.0]]), "must be rectangular"),
        (_request(2, data=np.arange(8.0).reshape(2, 4).tolist()), "nested as [2, 1, 2, 2]"),
        (_request(2, data="1,2,3"), "must be a JSON list"),
        (_request(0, data=[]), "between 1 and 4"),
        (_request(5), "between 1 and 4"),
    ],
)
def test_bad_requests_raise_protocol_error_naming_the_problem(body: object, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_infer_request(body, [X], max_instances=4)
    assert fragment in str(info.value)
    assert str(info.value).startswith("Got ")  # echoes what was sent


def test_error_names_the_field_and_states_the_limit() -> None:
    with pytest.raises(ProtocolError, match=r"inputs\[0\] \('x'\)\.shape\[0\].*at most 4"):
        parse_infer_request(_request(5), [X], 4)


def test_missing_input_is_named() -> None:
    ids = InputMeta("ids", "INT64", [-1, 3])
    with pytest.raises(ProtocolError, match=r"missing \['ids'\]"):
        parse_infer_request(_request(1), [X, ids], 4)


def test_duplicate_input_and_mismatched_instance_counts_are_rejected() -> None:
    entry = _request(1)["inputs"][0]
    with pytest.raises(ProtocolError, match="may appear once"):
        parse_infer_request({"inputs": [entry, entry]}, [X], 4)
    ids = InputMeta("ids", "INT64", [-1, 1])
    other = {"name": "ids", "shape": [2, 1], "datatype": "INT64", "data": [1, 2]}
    body = {"inputs": [entry, other]}
    with pytest.raises(ProtocolError, match="same number of instances"):
        parse_infer_request(body, [X, ids], 4)


def test_integer_inputs_reject_fractions_and_out_of_range_values() -> None:
    small = InputMeta("b", "UINT8", [-1, 2])
    ok = parse_infer_request({"inputs": [{"name": "b", "shape": [1, 2], "datatype": "UINT8",
                                          "data": [0, 255]}]}, [small], 4)
    assert ok["b"].dtype == np.uint8
    for data, fragment in (([0.5, 1], "integers only"), ([0, 256], "from 0 to 255")):
        body = {"inputs": [{"name": "b", "shape": [1, 2], "datatype": "UINT8", "data": data}]}
        with pytest.raises(ProtocolError, match=fragment):
            parse_infer_request(body, [small], 4)


def test_bool_inputs_take_true_false_only() -> None:
    flag = InputMeta("f", "BOOL", [-1, 2])
    good = {"inputs": [{"name": "f", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}]}
    assert parse_infer_request(good, [flag], 1)["f"].dtype == np.bool_
    good["inputs"][0]["data"] = [1, 0]
    with pytest.raises(ProtocolError, match="true/false"):
        parse_infer_request(good, [flag], 1)


def test_huge_data_is_not_echoed_in_full() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_infer_request(_request(2, data=["a"] * 100_000), [X], 4)
    assert len(str(info.value)) < 400


def test_protocol_error_is_a_tuner_error() -> None:
    assert issubclass(ProtocolError, TunerError)


def test_input_meta_requires_batch_first_and_fixed_other_dims() -> None:
    with pytest.raises(ValueError, match="-1 \\(the batch\\) first"):
        InputMeta("x", "FP32", [1, 8])
    with pytest.raises(ValueError, match="-1 \\(the batch\\) first"):
        InputMeta("x", "FP32", [-1, -1])
    with pytest.raises(ValueError, match="Supported"):
        InputMeta("x", "BYTES", [-1, 1])


def test_requested_outputs_default_to_all_and_reject_unknown_names() -> None:
    assert requested_outputs({}, ["a", "b"]) == ["a", "b"]
    assert requested_outputs({"outputs": [{"name": "b"}]}, ["a", "b"]) == ["b"]
    for bad in ([{"name": "c"}], "a", [], ["a"]):
        with pytest.raises(ProtocolError, match="outputs"):
            requested_outputs({"outputs": bad}, ["a", "b"])


def test_decode_body_accepts_dict_and_bytes_alike() -> None:
    body = _request(1)
    assert decode_body(json.dumps(body).encode()) == decode_body(body) == body


def test_response_is_v2_with_flat_data_and_echoed_id() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = np.array([1, 2], dtype=np.int64)
    response = format_infer_response("digits", {"logits": logits, "label": labels}, "r1")
    assert response == {
        "model_name": "digits",
        "id": "r1",
        "outputs": [
            {"name": "logits", "shape": [2, 3], "datatype": "FP32",
             "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]},
            {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        ],
    }
    json.dumps(response)  # plain Python types only
    assert "id" not in format_infer_response("digits", {"label": labels}, None)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(np.float32, "FP32"), (np.float16, "FP16"), (np.float64, "FP64"), (np.int64, "INT64"),
     (np.int32, "INT32"), (np.int8, "INT8"), (np.uint8, "UINT8"), (np.bool_, "BOOL")],
)
def test_numpy_and_v2_datatypes_map_both_ways(dtype: type, name: str) -> None:
    assert v2_datatype(dtype) == name
    meta = InputMeta("t", name, [-1, 1])
    value = [True] if name == "BOOL" else [1]
    parsed = parse_infer_request({"inputs": [{"name": "t", "shape": [1, 1], "datatype": name,
                                              "data": value}]}, [meta], 1)
    assert parsed["t"].dtype == np.dtype(dtype)


def test_unsupported_numpy_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="Supported"):
        v2_datatype(np.dtype("U3"))


def test_tensor_meta_serialises_for_the_metadata_endpoint() -> None:
    assert TensorMeta("y", "FP32", [-1, 10]).to_v2() == {"name": "y", "datatype": "FP32",
                                                        "shape": [-1, 10]}
