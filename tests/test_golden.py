"""Every golden exchange (``tests/golden.py``) is answered as the recorded tree answered it, byte
for byte: status, content type, the binary header length and the body, the counted series of
``/metrics`` included.

The answers in ``tests/golden.json`` were recorded from the tree before the data-plane refactor
(commit 56efafb) on an AMD EPYC with AVX-512. A machine whose ONNX Runtime computes other float
bits (another instruction set, other kernels: ``engine_bits`` differ) must still give the same
bytes everywhere but in the floats, which must agree to float32 precision.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.golden import EXCHANGES, REPO, build_models, close_enough, engine_bits, send
from tests.serverproc import running_server

RECORDED = json.loads((Path(__file__).parent / "golden.json").read_text())
BY_NAME = {entry["name"]: entry for entry in RECORDED["exchanges"]}


def test_every_exchange_has_its_recorded_answer():
    assert [exchange.name for exchange in EXCHANGES] == [e["name"] for e in RECORDED["exchanges"]]
    assert len(EXCHANGES) >= 44


@pytest.fixture(scope="module")
def same_bits() -> bool:
    return engine_bits(REPO / "models") == RECORDED["engine_bits"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every exchange, in order, against this tree's server on the golden models."""
    scratch = tmp_path_factory.mktemp("golden")
    models = build_models(scratch / "models")
    with running_server(scratch / "server.log", env={"MODELS_DIR": str(models)}) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return {exchange.name: send(client, exchange) for exchange in EXCHANGES}


@pytest.mark.parametrize("name", [exchange.name for exchange in EXCHANGES])
def test_the_answer_is_the_recorded_one(name: str, replayed, same_bits):
    expected, actual = BY_NAME[name], replayed[name]
    assert (actual["status"], actual["content_type"], actual["header_length"]) == (
        expected["status"], expected["content_type"], expected["header_length"],
    )  # fmt: skip
    if same_bits or "body" not in expected or actual.get("body") == expected["body"]:
        assert _body(actual) == _body(expected)
    else:  # another CPU's float kernels: the same JSON, floats to float32 precision
        assert close_enough(expected["body"], actual["body"]), actual["body"][:2000]


def _body(recorded: dict[str, Any]) -> bytes:
    if "body" in recorded:
        return recorded["body"].encode()
    return base64.b64decode(recorded["body_base64"])
