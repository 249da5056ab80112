"""The golden exchanges: requests whose answers must stay the same, byte for byte, across changes
to the code that serves them (``tests/test_golden.py`` replays them; ``tests/golden.json`` holds
the answers recorded from the tree before a refactor).

The requests cover the book endpoints (every input form, explanations, versions, every error
status), the generic ``/NAME/predict`` route on models the code has never heard of, V2 inference
in JSON and in binary tensor data, the metadata and probes, the OpenAPI document, and at the end
the counting side: the deterministic series of ``/metrics`` (predictions, drift signals, shadow
and canary outcomes, requests by route and status), so a refactor that moved a signal, a shadow
or a count is caught too.

The models folder is the committed book models plus three copies under other names, so the
generic route serves them: ``reviews`` (IMDB 1 and 2, version 2 shadowing 1), ``topics``
(Reuters 1) and ``houses`` (Boston 1 and 2, a 50 % canary keyed by ``X-Routing-Key``); Boston
itself runs version 2 as a shadow. Only the card's ``name`` changes in a copy (the card lists
the sha256 of every other file, not its own), and the model files are linked, not copied.

Record the answers of a tree (a checkout of the commit before the change, say)::

    python -m tests.golden /path/to/that/tree tests/golden.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent

REVIEW = (
    "This film was just brilliant: the casting, the story and the direction were wonderful, "
    "and the actors gave excellent performances. I loved every minute of it."
)
NEWSWIRE = (
    "Shares of the company rose after it said first quarter net profit rose to 12.5 mln dlrs, "
    "or 1.10 dlrs per share, from 9.8 mln dlrs a year earlier, on revenues of 150 mln dlrs."
)
HOUSE = [1.23247, 0.0, 8.14, 0.0, 0.538, 6.142, 91.7, 3.9769, 4.0, 307.0, 21.0, 396.9, 18.72]
HOUSE_2 = [0.02731, 0.0, 7.07, 0.0, 0.469, 6.421, 78.9, 4.9671, 2.0, 242.0, 17.8, 396.9, 9.14]
FAR_HOUSE = [90.0, 100.0, 28.0, 1.0, 0.9, 9.0, 100.0, 12.0, 24.0, 720.0, 23.0, 0.3, 40.0]
FEATURES = ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO",
            "B", "LSTAT")  # fmt: skip
REVIEWS = [
    REVIEW,
    "The worst film I have ever seen: boring, stupid and a waste of time.",
    "Ünïcode, tabs\tand <br /> tags: all tokenized as in training. 🎬",
]
JSON = {"content-type": "application/json"}

COPIES = {"reviews": ("imdb", (1, 2)), "topics": ("reuters", (1,)), "houses": ("boston", (1, 2))}
ROLLOUTS = {
    "imdb": {"stable": "1"},
    "reuters": {"stable": "1"},
    "boston": {"stable": "1", "shadow": "2"},
    "reviews": {"stable": "1", "shadow": "2"},
    "houses": {"stable": "1", "canary": "2", "canary_percent": 50},
}

COUNTED = (
    "predictions_total", "prediction_batch_size", "model_ready", "model_default_version",
    "model_load_failures", "shadow_predictions_total", "shadow_absolute_difference",
    "model_input_text_words", "model_input_unknown_word_ratio", "model_input_out_of_range_total",
    "model_predictions_by_label_total", "model_predicted_value", "http_requests_total",
)  # fmt: skip
"""The /metrics families whose values a fixed sequence of requests fixes (no clocks)."""


@dataclass(frozen=True)
class Exchange:
    name: str
    method: str
    path: str
    body: bytes | Callable[[], bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    pause: float = 0.0
    """Seconds to wait before sending (the shadows run after their responses)."""

    def content(self) -> bytes:
        return self.body() if callable(self.body) else self.body


def post(name: str, path: str, body: Any, **headers: str) -> Exchange:
    return Exchange(name, "POST", path, json.dumps(body).encode(), {**JSON, **headers})


def get(name: str, path: str, pause: float = 0.0) -> Exchange:
    return Exchange(name, "GET", path, pause=pause)


def binary_v2(inputs: list[tuple[str, str, list[int], bytes]], outputs: list[dict] | None = None,
              parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    """A request in V2's binary tensor data extension, as ``tritonclient`` frames it."""
    header: dict[str, Any] = {"inputs": [
        {"name": name, "datatype": datatype, "shape": shape,
         "parameters": {"binary_data_size": len(blob)}}
        for name, datatype, shape, blob in inputs
    ]}  # fmt: skip
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    body = head + b"".join(blob for *_, blob in inputs)
    return body, {"content-type": "application/octet-stream",
                  "inference-header-content-length": str(len(head))}  # fmt: skip


def bytes_elements(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def floats(rows: list[list[float]], fmt: str = "<f") -> bytes:
    return b"".join(struct.pack(fmt, x) for row in rows for x in row)


def _binary(name: str, path: str, *args: Any, **kwargs: Any) -> Exchange:
    body, headers = binary_v2(*args, **kwargs)
    return Exchange(name, "POST", path, body, headers)


def v2(name: str, path: str, tensor: dict[str, Any], **extra: Any) -> Exchange:
    return post(name, path, {"inputs": [tensor], **extra})


EXCHANGES: list[Exchange] = [
    # --- the book endpoints: every input form, explanations, versions ---
    post("imdb one text", "/imdb/predict", {"text": REVIEW}),
    post("imdb a batch of texts", "/imdb/predict", {"texts": REVIEWS}),
    post("imdb word-id sequences", "/imdb/predict",
         {"sequences": [[1, 14, 22, 16, 43, 530, 12000], [1, 2, 0, 9999]]}),
    post("imdb explained", "/imdb/predict", {"text": REVIEW, "explain": True, "explain_top": 4}),
    post("imdb version 2", "/imdb/predict", {"texts": REVIEWS, "version": 2}),
    post("imdb version 2 explained", "/imdb/predict",
         {"text": REVIEW, "version": "2", "explain": True, "explain_top": 3}),
    post("imdb stable", "/imdb/predict", {"text": "dull", "version": "stable"}),
    post("reuters top 3", "/reuters/predict", {"text": NEWSWIRE, "top_k": 3}),
    post("reuters batch top 5", "/reuters/predict", {"texts": [NEWSWIRE, REVIEW], "top_k": 5}),
    post("reuters explained", "/reuters/predict", {"text": NEWSWIRE, "explain": True}),
    post("reuters version 2", "/reuters/predict", {"text": NEWSWIRE, "version": 2, "top_k": 2}),
    post("boston features (shadowed by 2)", "/boston/predict", {"features": HOUSE}),
    post("boston instances (shadowed by 2)", "/boston/predict", {"instances": [HOUSE, FAR_HOUSE]}),
    post("boston records", "/boston/predict",
         {"records": [dict(zip(FEATURES, HOUSE_2))], "version": 1}),
    post("boston explained", "/boston/predict", {"features": FAR_HOUSE, "explain": True}),
    post("boston version 2", "/boston/predict", {"instances": [HOUSE, HOUSE_2], "version": 2}),
    # --- the errors of the book endpoints ---
    post("an empty text", "/imdb/predict", {"texts": ["fine", ""]}),
    post("too few features", "/boston/predict", {"features": [1, 2, 3]}),
    post("two input forms", "/imdb/predict", {"text": "great", "texts": ["also great"]}),
    post("no input form", "/reuters/predict", {"top_k": 3}),
    Exchange("not JSON", "POST", "/imdb/predict", b'{"text": "forgot the header"}',
             {"content-type": "application/x-www-form-urlencoded"}),
    Exchange("malformed JSON", "POST", "/imdb/predict", b'{"text": "unfinished', JSON),
    Exchange("invalid UTF-8", "POST", "/imdb/predict", b'{"text": "caf\xe9"}', JSON),
    post("an unknown model", "/mnist/predict", {"text": "x"}),
    post("a version not served", "/imdb/predict", {"text": "x", "version": 9}),
    post("no canary", "/imdb/predict", {"text": "x", "version": "canary"}),
    post("sequences to a TF-IDF version", "/imdb/predict", {"sequences": [[1, 14]], "version": 2}),
    post("over MAX_BATCH_SIZE", "/imdb/predict", {"texts": ["a"] * 1001}),
    post("over MAX_TEXT_CHARS", "/reuters/predict", {"texts": ["ok", "w" * 100_001]}),
    Exchange("a NaN feature", "POST", "/boston/predict",
             b'{"features": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', JSON),
    post("a string feature", "/boston/predict", {"features": ["1"] + [0] * 12}),
    post("top_k past the topics", "/reuters/predict", {"text": NEWSWIRE, "top_k": 47}),
    post("a negative word id", "/imdb/predict", {"sequences": [[1, -4]]}),
    post("an unknown record key", "/boston/predict",
         {"records": [{**dict(zip(FEATURES, HOUSE)), "beak": 3}]}),
    Exchange("over MAX_BODY_BYTES", "POST", "/imdb/predict",
             lambda: b'{"text": "' + b"a" * 10_000_001 + b'"}', JSON),
    # --- the generic route, on models the code does not know ---
    post("reviews: one text (shadowed by 2)", "/reviews/predict", {"text": REVIEW}),
    post("reviews: sequences (the shadow cannot read them)", "/reviews/predict",
         {"sequences": [[1, 14, 22]]}),
    post("reviews: version 2 explained", "/reviews/predict",
         {"text": REVIEW, "version": 2, "explain": True, "explain_top": 2}),
    post("topics: a batch", "/topics/predict", {"texts": [NEWSWIRE, "oil prices fell"], "top_k": 2}),
    post("topics: top_k past its labels", "/topics/predict", {"text": NEWSWIRE, "top_k": 50}),
    post("houses: canary key 0", "/houses/predict", {"features": HOUSE}, **{"x-routing-key": "customer-0"}),
    post("houses: stable key 3", "/houses/predict", {"features": HOUSE}, **{"x-routing-key": "customer-3"}),
    post("houses: records explained", "/houses/predict",
         {"records": [dict(zip(FEATURES, FAR_HOUSE))], "explain": True, "version": "stable"}),
    post("houses: the canary by name", "/houses/predict", {"features": HOUSE_2, "version": "canary"}),
    post("houses: a missing record key", "/houses/predict", {"records": [{"CRIM": 1.0}]}),
    # --- V2 ---
    v2("v2 imdb text", "/v2/models/imdb/infer",
       {"name": "text", "shape": [3], "datatype": "BYTES", "data": REVIEWS}, id="req-1"),
    v2("v2 imdb word ids", "/v2/models/imdb/versions/1/infer",
       {"name": "word_ids", "shape": [2, 4], "datatype": "INT32", "data": [[1, 14, 22, 0], [1, 2, 9, 10]]}),
    v2("v2 reuters label only", "/v2/models/reuters/infer",
       {"name": "text", "shape": [1], "datatype": "BYTES", "data": [NEWSWIRE]},
       outputs=[{"name": "label"}]),
    v2("v2 boston FP32 (shadowed)", "/v2/models/boston/infer",
       {"name": "features", "shape": [2, 13], "datatype": "FP32", "data": HOUSE + FAR_HOUSE}),
    v2("v2 boston FP64 version 2", "/v2/models/boston/versions/2/infer",
       {"name": "features", "shape": [1, 13], "datatype": "FP64", "data": [HOUSE_2]}),
    v2("v2 reviews (shadowed)", "/v2/models/reviews/infer",
       {"name": "text", "shape": [1], "datatype": "BYTES", "data": [REVIEW]}),
    v2("v2 reviews word ids (the shadow cannot read them)", "/v2/models/reviews/infer",
       {"name": "word_ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 14, 22]}),
    v2("v2 houses canary", "/v2/models/houses/versions/canary/infer",
       {"name": "features", "shape": [1, 13], "datatype": "FP32", "data": HOUSE}),
    _binary("v2 binary in, JSON out", "/v2/models/imdb/infer",
            [("text", "BYTES", [2], bytes_elements(REVIEWS[:2]))]),
    _binary("v2 binary in and out", "/v2/models/boston/versions/1/infer",
            [("features", "FP32", [2, 13], floats([HOUSE, HOUSE_2]))],
            parameters={"binary_data_output": True}),
    _binary("v2 one output binary", "/v2/models/reuters/infer",
            [("text", "BYTES", [1], bytes_elements([NEWSWIRE]))],
            outputs=[{"name": "label", "parameters": {"binary_data": True}},
                     {"name": "probabilities", "parameters": {"binary_data": False}}]),
    v2("v2 wrong shape", "/v2/models/boston/infer",
       {"name": "features", "shape": [1, 12], "datatype": "FP32", "data": [0.0] * 12}),
    v2("v2 wrong datatype", "/v2/models/boston/infer",
       {"name": "features", "shape": [1, 13], "datatype": "INT32", "data": [0] * 13}),
    v2("v2 unknown input", "/v2/models/imdb/infer",
       {"name": "review", "shape": [1], "datatype": "BYTES", "data": ["x"]}),
    v2("v2 unknown output", "/v2/models/imdb/infer",
       {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}, outputs=[{"name": "score"}]),
    v2("v2 data count off", "/v2/models/imdb/infer",
       {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x"]}),
    v2("v2 over MAX_BATCH_SIZE", "/v2/models/imdb/infer",
       {"name": "text", "shape": [1001], "datatype": "BYTES", "data": ["x"] * 1001}),
    v2("v2 an empty text", "/v2/models/imdb/infer",
       {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x", ""]}),
    v2("v2 a non-finite feature", "/v2/models/boston/infer",
       {"name": "features", "shape": [1, 13], "datatype": "FP64", "data": [1e300] * 13}),
    v2("v2 word ids to a TF-IDF version", "/v2/models/imdb/versions/2/infer",
       {"name": "word_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 14]}),
    v2("v2 unknown model", "/v2/models/mnist/infer",
       {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}),
    v2("v2 version not served", "/v2/models/imdb/versions/7/infer",
       {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}),
    Exchange("v2 compressed body", "POST", "/v2/models/imdb/infer", b"{}",
             {**JSON, "content-encoding": "gzip"}),
    Exchange("v2 not a request", "POST", "/v2/models/imdb/infer", b'{"inputs": 3}', JSON),
    # --- metadata, probes, cards, the document ---
    get("server metadata", "/v2"),
    get("v2 live", "/v2/health/live"),
    get("v2 ready", "/v2/health/ready"),
    get("v2 imdb metadata", "/v2/models/imdb"),
    get("v2 reviews version 2 metadata", "/v2/models/reviews/versions/2"),
    get("v2 houses metadata", "/v2/models/houses"),
    get("v2 boston ready", "/v2/models/boston/ready"),
    get("v2 boston 5 not ready", "/v2/models/boston/versions/5/ready"),
    get("v2 unknown model metadata", "/v2/models/mnist"),
    get("healthz", "/healthz"),
    get("readyz", "/readyz"),
    get("models", "/models"),
    get("imdb card with versions and rollout", "/models/imdb"),
    get("houses card with its canary", "/models/houses"),
    get("boston version 2 card", "/models/boston/versions/2"),
    get("an unknown card", "/models/mnist"),
    get("an unknown path", "/nowhere"),
    get("the OpenAPI document", "/openapi.json"),
    get("the counted series of /metrics", "/metrics", pause=1.5),
]


def build_models(target: Path, source: Path = REPO / "models") -> Path:
    """The golden models folder (module docstring) in ``target``; returns it."""
    for name in ("imdb", "reuters", "boston"):
        for version in (1, 2):
            _link_version(source / name / str(version), target / name / str(version))
    for name, (original, versions) in COPIES.items():
        for version in versions:
            _link_version(source / original / str(version), target / name / str(version), name)
    for name, rollout in ROLLOUTS.items():
        (target / name / "rollout.json").write_text(json.dumps(rollout))
    return target


def _link_version(source: Path, target: Path, rename: str | None = None) -> None:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name == "metadata.json":
            card = json.loads(path.read_text())
            if rename is not None:
                card["name"] = rename
            (target / path.name).write_text(json.dumps(card, indent=2, ensure_ascii=False))
        else:
            os.symlink(path.resolve(), target / path.name)


def send(client: httpx.Client, exchange: Exchange) -> dict[str, Any]:
    """One exchange as recorded: status, the headers that carry meaning, the body."""
    if exchange.pause:
        time.sleep(exchange.pause)
    response = client.request(exchange.method, exchange.path, content=exchange.content() or None,
                              headers=exchange.headers)  # fmt: skip
    body = response.content
    if exchange.path == "/metrics":
        body = counted_series(body.decode())
    recorded: dict[str, Any] = {
        "name": exchange.name,
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "header_length": response.headers.get("inference-header-content-length"),
    }
    try:
        recorded["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        recorded["body_base64"] = base64.b64encode(body).decode()
    return recorded


def counted_series(text: str) -> bytes:
    """The ``COUNTED`` families' samples, sorted (the order of series in an exposition is not
    part of any contract), without their ``_created`` timestamps."""
    kept = []
    for line in text.splitlines():
        if line.startswith("#") or "_created" in line.split("{")[0]:
            continue
        family = line.split("{")[0].split(" ")[0]
        if any(family == name or family.startswith(name + "_") for name in COUNTED):
            kept.append(line)
    return ("\n".join(sorted(kept)) + "\n").encode()


def engine_bits(models: Path) -> dict[str, str]:
    """sha256 of each committed ONNX model's outputs on its card's reference rows, as this
    machine's ONNX Runtime computes them. Equal to the recorded ones: this machine computes
    every float as the one that recorded the answers did, and the answers must match to the
    byte; different (another instruction set), only to float32 precision."""
    import numpy as np
    import onnxruntime

    bits = {}
    for card_path in sorted(models.glob("*/*/metadata.json")):
        card = json.loads(card_path.read_text())
        section = card.get("onnx")
        if not section:
            continue
        session = onnxruntime.InferenceSession(str(card_path.parent / "model.onnx"),
                                               providers=["CPUExecutionProvider"])  # fmt: skip
        feeds = {}
        for spec in section["inputs"]:
            rows = section["reference"]["inputs"][spec["name"]]
            if "positions" in rows:
                dense = np.zeros((len(rows["positions"]), rows["width"]), dtype=spec["dtype"])
                for row, hot in zip(dense, rows["positions"]):
                    row[hot] = 1
            else:
                dense = np.asarray(rows["values"], dtype=spec["dtype"])
            feeds[spec["name"]] = dense
        output = session.run(None, feeds)[0]
        key = str(card_path.parent.relative_to(models))
        bits[key] = hashlib.sha256(np.ascontiguousarray(output).tobytes()).hexdigest()
    return bits


FLOAT_EPSILONS = 16
"""How far a float may move when the order of a sum changes (another CPU's kernels, or the
multi-hot networks' first layer summed as kernel rows): 16 float32 epsilons, relative to the
number's size (at least 1), as the server's own load-time check (``PARITY_EPSILONS``)."""


TEXT_V1 = re.compile(
    r"^/(imdb|reuters|reviews|topics)/predict$|^/v2/models/(imdb|reuters|reviews)(/versions/1)?/infer$"
)


def multi_hot(exchange: Exchange) -> bool:
    """Whether a version-1 text model (multi-hot input, served as sums of kernel rows since
    issue 25) answers the exchange: its floats may differ from the recorded ones in their last
    bits, within ``FLOAT_EPSILONS``; every other byte of its answer is as recorded."""
    body = exchange.content()
    named_2 = b'"version": 2' in body or b'"version": "2"' in body
    return exchange.method == "POST" and bool(TEXT_V1.match(exchange.path)) and not named_2


def close_enough(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Two recorded answers equal but for floats at most ``FLOAT_EPSILONS`` apart: the JSON
    once parsed, and V2's binary data after it byte for byte (the JSON's length, in its
    header, may move with the floats' digits)."""
    if "body" not in expected or "body" not in actual:
        return False
    parts = []
    for answer in (expected, actual):
        cut = int(answer["header_length"]) if answer["header_length"] else len(answer["body"])
        try:
            parts.append((json.loads(answer["body"][:cut]), answer["body"][cut:]))
        except ValueError:
            return False
    (a, a_binary), (b, b_binary) = parts
    return _close(a, b) and a_binary == b_binary


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= FLOAT_EPSILONS * 2.0**-23 * max(abs(a), 1.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def record(tree: Path, out: Path) -> None:
    """Serve ``tree``'s code on the golden models and write every answer to ``out``."""
    import tempfile

    sys.path.insert(0, str(REPO))
    from tests.serverproc import free_port, running_server

    with tempfile.TemporaryDirectory() as scratch:
        models = build_models(Path(scratch) / "models")
        port = free_port()
        env = {"MODELS_DIR": str(models), "PORT": str(port), "PYTHONPATH": str(tree)}
        import tests.serverproc as serverproc

        serverproc.REPO = tree  # the server runs the recorded tree's code, from its folder
        with running_server(Path(scratch) / "server.log", env=env) as server:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                answers = [send(client, exchange) for exchange in EXCHANGES]
        recorded = {"engine_bits": engine_bits(REPO / "models"), "exchanges": answers}
    out.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {len(answers)} exchanges of {tree} in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.golden TREE OUT.json")
    record(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
