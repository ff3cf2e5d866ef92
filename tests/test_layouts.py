"""serving.v2.layouts: a remembered binary layout gives what the full parse gives, and every
request it cannot vouch for still goes through the full parse (pure, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.v2 import layouts
from serving.v2.layouts import RequestParser
from serving.v2.types import InputMeta, ProtocolError
from serving.v2.wire import parse_request

X = InputMeta("x", "FP32", [-1, 1, 2, 2])
IDS = InputMeta("ids", "INT64", [-1, 3])


def _body(header: dict, blob: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + blob, str(len(text))


def _x_header(n: int = 1, **extra: object) -> dict:
    return {"inputs": [{"name": "x", "shape": [n, 1, 2, 2], "datatype": "FP32",
                        "parameters": {"binary_data_size": 16 * n}}], **extra}


def _floats(values: list[float]) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def test_a_repeated_header_reads_each_request_s_own_bytes_as_the_full_parse_does() -> None:
    parser = RequestParser([X], ["y"], 4)
    first = parser.parse(*_body(_x_header(parameters={"binary_data_output": True}), _floats([1, 2, 3, 4])))
    second_body = _body(_x_header(parameters={"binary_data_output": True}), _floats([5, 6, 7, 8]))
    second = parser.parse(*second_body)
    full = parse_request(*second_body, [X], ["y"], 4)
    assert first.tensors["x"].ravel().tolist() == [1, 2, 3, 4]
    assert second.tensors["x"].ravel().tolist() == [5, 6, 7, 8]
    assert second.tensors["x"].dtype == full.tensors["x"].dtype and second.tensors["x"].shape == full.tensors["x"].shape
    assert second.outputs == full.outputs == {"y": True} and second.id is None
    assert len(parser._layouts) == 1  # the second came from the remembered layout


def test_the_same_header_with_bytes_missing_gets_the_full_parse_s_error() -> None:
    parser = RequestParser([X], ["y"], 4)
    parser.parse(*_body(_x_header(), _floats([1, 2, 3, 4])))
    short = _body(_x_header(), _floats([1, 2, 3]))
    with pytest.raises(ProtocolError) as remembered:
        parser.parse(*short)
    with pytest.raises(ProtocolError) as full:
        parse_request(*short, [X], ["y"], 4)
    assert str(remembered.value) == str(full.value) and "only 12 bytes follow" in str(full.value)


def test_a_header_that_failed_is_not_remembered() -> None:
    parser = RequestParser([X], ["y"], 1)
    body = _body(_x_header(2), _floats(list(range(8))))  # 2 instances, the limit is 1
    for _ in range(2):
        with pytest.raises(ProtocolError):
            parser.parse(*body)
    assert parser._layouts == {}


def test_bool_inputs_are_checked_on_every_request() -> None:
    flag = InputMeta("f", "BOOL", [-1, 2])
    header = {"inputs": [{"name": "f", "shape": [1, 2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]}
    parser = RequestParser([flag], ["y"], 1)
    assert parser.parse(*_body(header, b"\x01\x00")).tensors["f"].tolist() == [[True, False]]
    with pytest.raises(ProtocolError, match="one byte, 0 or 1"):
        parser.parse(*_body(header, b"\x01\x02"))


def test_json_data_beside_binary_data_keeps_its_values() -> None:
    header = _x_header()
    header["inputs"].insert(0, {"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [7, 8, 9]})
    parser = RequestParser([X, IDS], ["y"], 4)
    for values in ([0, 1, 2, 3], [4, 5, 6, 7]):
        tensors = parser.parse(*_body(header, _floats(values))).tensors
        assert tensors["ids"].tolist() == [[7, 8, 9]] and tensors["x"].ravel().tolist() == values


def test_ids_are_echoed_and_the_layouts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layouts, "MAX_LAYOUTS", 3)
    parser = RequestParser([X], ["y"], 4)
    for i in range(7):
        request = parser.parse(*_body(_x_header(id=f"r{i}"), _floats([i, 0, 0, 0])))
        assert request.id == f"r{i}" and request.tensors["x"].ravel()[0] == i
        assert len(parser._layouts) <= 3
    again = parser.parse(*_body(_x_header(id="r6"), _floats([9, 9, 9, 9])))
    assert again.id == "r6" and again.tensors["x"].ravel().tolist() == [9, 9, 9, 9]


def test_json_requests_are_parsed_in_full() -> None:
    parser = RequestParser([X], ["y"], 4)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 2, 2], "datatype": "FP32",
                                   "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()
    assert parser.parse(body, None).tensors["x"].ravel().tolist() == [1, 2, 3, 4]
    assert parser._layouts == {}
