"""serving.v2.parse, serving.v2.response and serving.v2.wire: V2 requests and responses, JSON and binary (pure, no Ray)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from serving.v2.parse import decode_body, parse_infer_request
from serving.v2.response import format_infer_response, output_selection, requested_outputs
from serving.v2.types import (
    HEADER_LENGTH,
    InputMeta,
    PayloadTooLarge,
    ProtocolError,
    RequestTimeout,
    TensorMeta,
    UnsupportedMediaType,
    v2_datatype,
)
from serving.v2.wire import (
    ResponseError,
    body_too_large,
    check_content_type,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    max_body_bytes_for,
    parse_request,
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
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [NaN]}]}', "not valid JSON"),
        ("{not json", "not valid JSON"),
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


# --- The binary tensor data extension, content types and the body limit (serving.v2.wire) -------

def _binary(tensors: dict, binary_outputs: bool = False, request_id: str | None = None):
    encoded = encode_infer_request(tensors, binary=True, binary_outputs=binary_outputs,
                                   request_id=request_id)
    return encoded.body, encoded.headers[HEADER_LENGTH]


def _hand_made(header: dict, blob: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + blob, str(len(text))


def _binary_x(n: int = 1, size: int | None = None, **entry: object) -> dict:
    params = {"binary_data_size": 16 * n if size is None else size}
    return {"inputs": [{"name": "x", "shape": [n, 1, 2, 2], "datatype": "FP32",
                        "parameters": params, **entry}]}


MIXED = [InputMeta("x", "FP32", [-1, 1, 2, 2]), InputMeta("ids", "INT64", [-1, 3]),
         InputMeta("mask", "BOOL", [-1, 3]), InputMeta("px", "UINT8", [-1, 2]),
         InputMeta("h", "FP16", [-1, 2])]


def _mixed_tensors(n: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {"x": rng.standard_normal((n, 1, 2, 2)).astype(np.float32),
            "ids": rng.integers(-5, 1 << 40, (n, 3)), "mask": rng.integers(0, 2, (n, 3)) == 1,
            "px": rng.integers(0, 256, (n, 2)).astype(np.uint8),
            "h": rng.standard_normal((n, 2)).astype(np.float16)}


def test_binary_request_round_trips_every_datatype_exactly() -> None:
    tensors = _mixed_tensors(3)
    body, length = _binary(tensors, request_id="b1")
    request = parse_request(body, length, MIXED, ["y"], max_instances=4)
    assert request.id == "b1" and request.outputs == {"y": False}
    for name, array in tensors.items():
        assert request.tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(request.tensors[name], array)


def test_binary_data_is_little_endian_row_major() -> None:
    values = [1.5, -2.0, 3.25, 4.0]
    body, length = _hand_made(_binary_x(1), struct.pack("<4f", *values))
    tensors = parse_request(body, length, [X], ["y"], 4).tensors
    assert tensors["x"].tolist() == [[[[1.5, -2.0], [3.25, 4.0]]]]


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    ids = InputMeta("ids", "INT64", [-1, 3])
    header = _binary_x(1)
    header["inputs"].insert(0, {"name": "ids", "shape": [1, 3], "datatype": "INT64",
                                "data": [7, 8, 9]})
    body, length = _hand_made(header, np.arange(4, dtype="<f4").tobytes())
    tensors = parse_request(body, length, [X, ids], ["y"], 4).tensors
    assert tensors["ids"].tolist() == [[7, 8, 9]] and tensors["x"].ravel().tolist() == [0, 1, 2, 3]


def test_header_length_alone_allows_an_all_json_body_with_binary_outputs() -> None:
    body, length = _hand_made(_request(1) | {"parameters": {"binary_data_output": True}}, b"")
    request = parse_request(body, length, [X], ["y", "z"], 4)
    assert request.outputs == {"y": True, "z": True}


FOUR_FLOATS = np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("body", "length", "fragment"),
    [
        (_hand_made(_binary_x(1), FOUR_FLOATS)[0], "abc", "Inference-Header-Content-Length"),
        (_hand_made(_binary_x(1), FOUR_FLOATS)[0], "0", "integer from 1 to the body's length"),
        (_hand_made(_binary_x(1), FOUR_FLOATS)[0], "5000", "body's length (126 bytes)"),
        (_hand_made(_binary_x(1), FOUR_FLOATS)[0], "-3", "Inference-Header-Content-Length"),
        (*_hand_made(_binary_x(1, size=12), FOUR_FLOATS[:12]), "takes 16 bytes"),
        (*_hand_made(_binary_x(2), FOUR_FLOATS), "only 16 bytes follow"),
        (*_hand_made(_binary_x(1), FOUR_FLOATS + b"\0"), "add up to 16 bytes"),
        (*_hand_made(_binary_x(1, size=-16), FOUR_FLOATS), "byte count"),
        (*_hand_made(_binary_x(1, size="16"), FOUR_FLOATS), "byte count"),
        (*_hand_made(_binary_x(1, size=True), FOUR_FLOATS), "byte count"),
        (*_hand_made(_binary_x(1, data=[0.0] * 4), FOUR_FLOATS), "either 'data' or binary"),
        (*_hand_made(_binary_x(1), b""), "only 0 bytes follow"),
        (b"{not json" + FOUR_FLOATS, "9", "not valid JSON"),
        (json.dumps(_binary_x(1)).encode(), None, "needs the Inference-Header-Content-Length"),
        (*_hand_made(_request(1, parameters={"binary_size": 16}), b""), "understands only"),
        (*_hand_made(_request(1) | {"parameters": {"binary": True}}, b""), "understands only"),
        (*_hand_made(_request(1) | {"parameters": {"binary_data_output": 1}}, b""),
         "true or false"),
    ],
    ids=["length-not-int", "length-zero", "length-beyond-body", "length-negative",
         "size-vs-shape", "bytes-missing", "bytes-left-over", "size-negative", "size-string",
         "size-bool", "data-and-binary", "no-bytes", "bad-json-header", "binary-without-header",
         "unknown-input-parameter", "unknown-request-parameter", "binary-output-not-bool"],
)
def test_bad_binary_requests_raise_protocol_error_naming_the_problem(
    body: bytes, length: str | None, fragment: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(body, length, [X], ["y"], max_instances=4)
    assert fragment in str(info.value)
    assert str(info.value).startswith("Got ") and info.value.status == 400


def test_bool_binary_data_takes_zero_or_one_bytes() -> None:
    flag = InputMeta("f", "BOOL", [-1, 2])
    header = {"inputs": [{"name": "f", "shape": [1, 2], "datatype": "BOOL",
                          "parameters": {"binary_data_size": 2}}]}
    assert parse_request(*_hand_made(header, b"\x01\x00"), [flag], ["y"], 1).tensors[
        "f"].tolist() == [[True, False]]
    with pytest.raises(ProtocolError, match="one byte, 0 or 1"):
        parse_request(*_hand_made(header, b"\x01\x02"), [flag], ["y"], 1)


def test_binary_shape_limits_are_the_json_ones() -> None:
    body, length = _binary({"x": np.zeros((5, 1, 2, 2), np.float32)})
    with pytest.raises(ProtocolError, match="between 1 and 4"):
        parse_request(body, length, [X], ["y"], 4)


def test_output_selection_request_default_and_per_output_override() -> None:
    names = ["a", "b"]
    assert output_selection({}, names) == {"a": False, "b": False}
    on = {"parameters": {"binary_data_output": True}}
    assert output_selection(on, names) == {"a": True, "b": True}
    assert output_selection(on | {"outputs": [{"name": "b", "parameters": {"binary_data": False}},
                                              {"name": "a"}]}, names) == {"b": False, "a": True}
    assert output_selection({"outputs": [{"name": "a", "parameters": {"binary_data": True}}]},
                            names) == {"a": True}
    for bad, fragment in (([{"name": "a", "parameters": {"binary_data": "yes"}}], "true or false"),
                          ([{"name": "a", "parameters": {"classification": 3}}], "understands"),
                          ([{"name": "a"}, {"name": "a"}], "at most once"),
                          ([{"name": "a", "shape": [1]}], "outputs")):
        with pytest.raises(ProtocolError, match=fragment):
            output_selection({"outputs": bad}, names)


def test_binary_response_is_json_header_then_little_endian_bytes() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = np.array([1, 2], dtype=np.int64)
    encoded = encode_infer_response("digits", {"logits": logits, "label": labels}, "r1",
                                    binary_outputs=["logits"])
    assert encoded.headers["content-type"] == "application/octet-stream"
    length = int(encoded.headers[HEADER_LENGTH])
    header = json.loads(encoded.body[:length])
    assert header == {"model_name": "digits", "id": "r1", "outputs": [
        {"name": "logits", "shape": [2, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": 24}},
        {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}
    assert encoded.body[length:] == logits.astype("<f4").tobytes()
    decoded = decode_infer_response(encoded.body, encoded.headers[HEADER_LENGTH])
    assert decoded.model_name == "digits" and decoded.id == "r1"
    np.testing.assert_array_equal(decoded.outputs["logits"], logits)
    np.testing.assert_array_equal(decoded.outputs["label"], labels)


def test_response_without_binary_outputs_stays_plain_json() -> None:
    encoded = encode_infer_response("m", {"y": np.ones((1, 2), np.float32)})
    assert encoded.headers == {"content-type": "application/json"}
    assert json.loads(encoded.body) == format_infer_response("m", {"y": np.ones((1, 2), "f4")})
    assert decode_infer_response(encoded.body).outputs["y"].tolist() == [[1.0, 1.0]]


def test_json_request_encoding_parses_back() -> None:
    tensors = _mixed_tensors(1)
    encoded = encode_infer_request(tensors, binary=False)
    assert encoded.headers == {"content-type": "application/json"}
    request = parse_request(encoded.body, None, MIXED, ["y"], 1)
    for name, array in tensors.items():
        np.testing.assert_array_equal(request.tensors[name], array)


@pytest.mark.parametrize(
    "body", [b"<html>", b'{"outputs": 3}', b'{"model_name": "m", "outputs": [{"name": "y"}]}'])
def test_malformed_responses_raise_response_error(body: bytes) -> None:
    with pytest.raises(ResponseError, match="not a V2 inference response"):
        decode_infer_response(body)
    good = encode_infer_response("m", {"y": np.ones(2, np.float32)}, binary_outputs=["y"])
    with pytest.raises(ResponseError, match="belong to no output"):
        decode_infer_response(good.body + b"\0", good.headers[HEADER_LENGTH])


@pytest.mark.parametrize(
    ("content_type", "length"),
    [(None, None), ("application/json", None), ("application/json; charset=utf-8", None),
     ("Application/JSON", None), ("application/octet-stream", "12"), (None, "12")],
)
def test_v2_content_types_are_accepted(content_type: str | None, length: str | None) -> None:
    check_content_type(content_type, length)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_other_content_types_get_415_naming_what_to_send(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        check_content_type(content_type, None)
    assert info.value.status == 415
    message = str(info.value)
    assert content_type in message and "application/json" in message
    assert "Inference-Header-Content-Length" in message


def test_octet_stream_without_the_header_length_is_a_bad_request() -> None:
    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length") as info:
        check_content_type("application/octet-stream", None)
    assert info.value.status == 400


def test_body_limit_fits_a_full_batch_of_worst_case_json_but_not_much_more() -> None:
    batch = 8
    limit = max_body_bytes_for([X], batch)
    assert limit == 64 * 1024 + batch * 4 * 40
    # The longest float64 texts, pretty-printed and nested: the worst JSON a client may send.
    worst = np.full((batch, 1, 2, 2), -1.2345678901234567e-300)
    pretty = json.dumps({"inputs": [{"name": "x", "shape": [batch, 1, 2, 2],
                                     "datatype": "FP32", "data": worst.tolist()}]}, indent=4)
    assert len(pretty) < limit
    big = InputMeta("img", "FP32", [-1, 3, 224, 224])
    full = np.full((4, 3, 224, 224), -1.2345678901234567e-30).tolist()
    assert len(json.dumps(full)) < max_body_bytes_for([big], 4) < 2 * len(json.dumps(full))


def test_body_too_large_is_413_naming_size_limit_and_fix() -> None:
    error = body_too_large(10_000_000, 66_000, declared=True)
    assert isinstance(error, PayloadTooLarge) and error.status == 413
    message = str(error)
    assert "10000000 bytes" in message and "66000" in message and "max_body_bytes" in message
    assert "more than 66000" in str(body_too_large(66_000, 66_000, declared=False))


def test_error_statuses() -> None:
    assert (ProtocolError.status, PayloadTooLarge.status, UnsupportedMediaType.status,
            RequestTimeout.status) == (400, 413, 415, 408)
