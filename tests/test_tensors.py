"""V2 tensors (``service.api.tensors``): both encodings, and every malformed request a 400, never a 500."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from service.api.tensors import Tensor, TensorError, decode_inputs, encode_response, parse_request


def request(*inputs: dict, header: str | None = None, binary: bytes = b"") -> list[Tensor]:
    body = json.dumps({"inputs": list(inputs)}).encode()
    parsed, rest = parse_request(body + binary, str(len(body)) if binary else header)
    return decode_inputs(parsed, rest)


def test_flat_and_nested_json_data_give_the_same_tensor():
    flat = request({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]})[0]
    nested = request({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]})[0]
    assert flat.data.tolist() == nested.data.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert flat.data.dtype == np.float32


def test_binary_bytes_elements_are_length_prefixed():
    raw = b"".join(struct.pack("<I", len(t)) + t for t in (b"good", b"", b"\xc3\xa9t\xc3\xa9"))
    spec = {"name": "text", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(raw)}}
    assert request(spec, binary=raw)[0].data == [b"good", b"", "été".encode()]


def test_binary_numbers_are_little_endian():
    raw = np.array([1, 2, 3], dtype="<i8").tobytes()
    spec = {"name": "ids", "datatype": "INT64", "shape": [1, 3], "parameters": {"binary_data_size": 24}}
    assert request(spec, binary=raw)[0].data.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}, "holds 2 elements"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "negative dimension"),
        ({"name": "x", "datatype": "FP32", "shape": [2**63, 2**63], "data": [1]}, "holds 1 elements"),
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}, "JSON integer"),
        ({"name": "x", "datatype": "INT8", "shape": [1], "data": [1000]}, "does not fit"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": [True]}, "JSON number"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}, "must be a string"),
        ({"name": "x", "datatype": "COMPLEX", "shape": [1], "data": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "no 'data'"),
    ],
)
def test_a_malformed_tensor_is_a_tensor_error_naming_it(spec, message):
    with pytest.raises(TensorError, match=message):
        request(spec)


def test_binary_data_past_the_body_end_is_refused():
    spec = {"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}
    with pytest.raises(TensorError, match="runs past the body's end"):
        request(spec, binary=b"\0" * 8)


def test_a_header_length_past_the_body_is_refused():
    with pytest.raises(TensorError, match="is not a length within"):
        parse_request(b"{}", "99")


def test_a_response_in_binary_carries_its_json_length():
    outputs = [
        Tensor("probability", "FP32", (1, 1), np.array([[0.25]], np.float32)),
        Tensor("label", "BYTES", (1,), [b"positive"]),
    ]
    body, header_length = encode_response({"model_name": "m"}, outputs, {"probability"})
    header = json.loads(body[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4}
    assert header["outputs"][1]["data"] == ["positive"]
    assert np.frombuffer(body[header_length:], "<f4").tolist() == [0.25]


def test_a_json_response_has_no_header_length():
    body, header_length = encode_response(
        {"model_name": "m"}, [Tensor("value", "FP32", (2, 1), np.array([[1.5], [2.0]], np.float32))], set()
    )
    assert header_length is None
    assert json.loads(body)["outputs"][0]["data"] == [1.5, 2.0]
