"""Read a ``model.onnx``'s graph and weights, for the NumPy path of ``service.engine.network``.

ONNX Runtime runs a model but does not hand out its weights, and the ``onnx`` package (31 MB
installed, with its own dependencies) would be in the serving install only to read them. The
file is a protocol buffer, and ``protobuf`` is already there (ONNX Runtime's own dependency):
this module declares the few ONNX messages and fields it reads, with their numbers from
``onnx.proto`` (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto), and lets protobuf parse
them; every other field is skipped, as protobuf skips unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

Field = descriptor_pb2.FieldDescriptorProto

# name: (number, type, repeated, message type)
MESSAGES: dict[str, dict[str, tuple[int, int, bool, str | None]]] = {
    "TensorProto": {
        "dims": (1, Field.TYPE_INT64, True, None),
        "data_type": (2, Field.TYPE_INT32, False, None),
        "float_data": (4, Field.TYPE_FLOAT, True, None),
        "int32_data": (5, Field.TYPE_INT32, True, None),
        "int64_data": (7, Field.TYPE_INT64, True, None),
        "name": (8, Field.TYPE_STRING, False, None),
        "raw_data": (9, Field.TYPE_BYTES, False, None),
        "double_data": (10, Field.TYPE_DOUBLE, True, None),
    },
    "AttributeProto": {
        "name": (1, Field.TYPE_STRING, False, None),
        "f": (2, Field.TYPE_FLOAT, False, None),
        "i": (3, Field.TYPE_INT64, False, None),
        "s": (4, Field.TYPE_BYTES, False, None),
        "ints": (8, Field.TYPE_INT64, True, None),
        "type": (20, Field.TYPE_INT32, False, None),
    },
    "NodeProto": {
        "input": (1, Field.TYPE_STRING, True, None),
        "output": (2, Field.TYPE_STRING, True, None),
        "op_type": (4, Field.TYPE_STRING, False, None),
        "attribute": (5, Field.TYPE_MESSAGE, True, "AttributeProto"),
        "domain": (7, Field.TYPE_STRING, False, None),
    },
    "ValueInfoProto": {"name": (1, Field.TYPE_STRING, False, None)},
    "GraphProto": {
        "node": (1, Field.TYPE_MESSAGE, True, "NodeProto"),
        "initializer": (5, Field.TYPE_MESSAGE, True, "TensorProto"),
        "input": (11, Field.TYPE_MESSAGE, True, "ValueInfoProto"),
        "output": (12, Field.TYPE_MESSAGE, True, "ValueInfoProto"),
    },
    "ModelProto": {"graph": (7, Field.TYPE_MESSAGE, False, "GraphProto")},
}

DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 11: np.float64}
"""ONNX ``TensorProto.DataType`` values read here: FLOAT, INT32, INT64, DOUBLE."""

ATTRIBUTE_INT, ATTRIBUTE_INTS = 2, 7


@cache
def model_message() -> Any:
    """The ``ModelProto`` class for the fields above, built once."""
    file = descriptor_pb2.FileDescriptorProto(name="service_onnx_subset.proto",
                                              package="service_onnx", syntax="proto2")  # fmt: skip
    for message, fields in MESSAGES.items():
        declared = file.message_type.add(name=message)
        for name, (number, kind, repeated, type_name) in fields.items():
            declared.field.add(
                name=name, number=number, type=kind,
                label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL,
                **({"type_name": f".service_onnx.{type_name}"} if type_name else {}),
            )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("service_onnx.ModelProto"))


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Graph:
    """A model's graph: its inputs and outputs (graph inputs that are weights left out), its
    nodes in order, and its weights by name."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    weights: dict[str, np.ndarray]


def read_graph(path: Path) -> Graph:
    """The graph of a ``model.onnx``; ``ValueError`` for a tensor type it does not read."""
    graph = model_message().FromString(path.read_bytes()).graph
    weights = {tensor.name: _array(tensor) for tensor in graph.initializer}
    nodes = tuple(
        Node(node.op_type, tuple(node.input), tuple(node.output),
             {a.name: _attribute(a) for a in node.attribute})
        for node in graph.node if not node.domain or node.domain == "ai.onnx"
    )  # fmt: skip
    if len(nodes) != len(graph.node):
        raise ValueError(f"{path} uses operators outside the default ONNX domain")
    inputs = tuple(value.name for value in graph.input if value.name not in weights)
    return Graph(inputs, tuple(value.name for value in graph.output), nodes, weights)


def _array(tensor: Any) -> np.ndarray:
    dtype = DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ValueError(f"tensor {tensor.name!r} has ONNX data type {tensor.data_type}")
    if tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        field = {np.float32: "float_data", np.int32: "int32_data", np.int64: "int64_data",
                 np.float64: "double_data"}[dtype]  # fmt: skip
        values = np.asarray(getattr(tensor, field), dtype=dtype)
    return values.astype(dtype, copy=False).reshape(tuple(tensor.dims))


def _attribute(attribute: Any) -> Any:
    if attribute.type == ATTRIBUTE_INT:
        return attribute.i
    if attribute.type == ATTRIBUTE_INTS:
        return tuple(attribute.ints)
    return None
