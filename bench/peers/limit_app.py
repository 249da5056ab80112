"""The true limit probe: the fastest correct computation of our answers, as a bare ASGI callable
under the same uvicorn and event loop as ours.

For every scenario of the benchmark it computes the answer our server gives (the same numbers
to float32 precision, ``bench/run.py`` checks them, and the same JSON shape and size) with the
least Python it can: no framework, no validation, no limits, no metrics, no logs, no signals,
no request ids, nothing read from a request but the input.

* IMDB and Reuters, version 1: the shared tokenizer (``service.contract.vectorize.tokenize``), a
  dict lookup per word, the set of ids present, then the first Dense layer as the sum of the
  kernel rows of those ids and the two small layers in NumPy (the weights of the committed
  ``model.onnx``);
* IMDB, version 2 (``"version": 2``): the TF-IDF weighing of the shared vocabulary
  (``service.contract.tfidf``), the embedding bag as one product of the rows present with their
  weights, then the output layer in NumPy;
* Boston (``features`` or ``records``): the committed ``model.onnx`` on ONNX Runtime (13 inputs:
  one call beats NumPy's per-layer cost), the price in dollars and the features out of range;
* a batch of reviews (``texts``): the version-1 path, kernel rows summed per review.

What our server costs beyond this probe is what our own layers add: ``bench/run.py`` runs it
beside ours in every run and reports ours ÷ probe per scenario.

    MODELS_DIR=models uvicorn limit_app:app --no-access-log --loop asyncio
      (PYTHONPATH: the repository and bench/peers; ours' venv)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from service.contract.artifacts import read_word_index
from service.contract.tfidf import TfidfBag, normalized
from service.contract.vectorize import INDEX_FROM, OOV_ID, START_ID, tokenize
from service.engine.network import network_of_graph
from service.engine.onnxfile import read_graph
from service.engine.runtime import OnnxRuntime

MODELS = Path(os.environ.get("MODELS_DIR", "models"))


def card(name: str, version: int) -> dict:
    return json.loads((MODELS / name / str(version) / "metadata.json").read_text())


class MultiHot:
    """A version-1 text network: word → id, then the kernel-row sums."""

    def __init__(self, name: str) -> None:
        folder = MODELS / name / "1"
        meta = card(name, 1)
        num_words = meta["preprocessing"]["num_words"]
        self.ids = {w: (r + INDEX_FROM if r + INDEX_FROM < num_words else OOV_ID)
                    for w, r in read_word_index(folder).items()}  # fmt: skip
        network = network_of_graph(read_graph(folder / "model.onnx"))
        assert network is not None, f"{folder}: not a Dense stack"
        (self.w1, self.b1), *rest = [(d.kernel, d.bias) for d in network.steps]
        self.rest = rest
        self.labels = meta["labels"]
        self.ref = f'"model":{{"name":"{name}","version":"1"}}'

    def scores(self, text: str) -> np.ndarray:
        present = set(map(self.ids.get, tokenize(text)))
        present.discard(None)
        present.add(START_ID)
        x = np.maximum(self.w1[list(present)].sum(axis=0) + self.b1, 0)
        for i, (kernel, bias) in enumerate(self.rest):
            x = x @ kernel + bias
            if i < len(self.rest) - 1:
                x = np.maximum(x, 0)
        return x


class Imdb(MultiHot):
    def answer(self, text: str) -> str:
        p = float(1 / (1 + np.exp(-self.scores(text)[0])))
        return f'{{"label":"{self.labels[p >= 0.5]}","probability":{p!r}}}'


class Reuters(MultiHot):
    def answer(self, text: str, top_k: int = 3) -> str:
        z = self.scores(text)
        e = np.exp(z - z.max())
        p = (e / e.sum()).astype(np.float32).tolist()
        order = np.argsort(p)[::-1][:top_k].tolist()
        top = ",".join(f'{{"class_id":{i},"label":"{self.labels[i]}","probability":{p[i]!r}}}'
                       for i in order)  # fmt: skip
        return (f'{{"label":"{self.labels[order[0]]}","class_id":{order[0]},'
                f'"probabilities":{json.dumps(p, separators=(",", ":"))},"top":[{top}]}}')  # fmt: skip


class ImdbBag:
    """IMDB version 2: the TF-IDF bag, the embedding bag, the output layer."""

    def __init__(self) -> None:
        meta = card("imdb", 2)
        self.bag = TfidfBag.read(MODELS / "imdb" / "2", meta["preprocessing"])
        graph = read_graph(MODELS / "imdb" / "2" / "model.onnx")
        by_op = {node.op: node for node in graph.nodes}
        self.embedding = graph.weights[by_op["Gather"].inputs[0]]
        kernel = next(graph.weights[n.inputs[1]] for n in graph.nodes
                      if n.op == "MatMul" and n.inputs[1] in graph.weights)  # fmt: skip
        bias = next(graph.weights[n.inputs[1]] for n in graph.nodes
                    if n.op == "Add" and n.inputs[1] in graph.weights and graph.weights[n.inputs[1]].ndim == 1)  # fmt: skip
        self.kernel, self.bias = kernel[:, 0], float(bias[0])
        self.labels = meta["labels"]

    def answer(self, text: str) -> str:
        terms, weights, _, _ = self.bag.weigh(text)
        h = normalized(weights) @ self.embedding[terms] if len(terms) else np.zeros(len(self.kernel))
        p = float(np.float32(1 / (1 + np.exp(-(h @ self.kernel + self.bias)))))
        return f'{{"label":"{self.labels[p >= 0.5]}","probability":{p!r}}}'


class Boston:
    def __init__(self) -> None:
        meta = card("boston", 1)
        self.names = [f["name"] for f in meta["features"]]
        self.lows = np.array([f["train_min"] for f in meta["features"]])
        self.highs = np.array([f["train_max"] for f in meta["features"]])
        self.runtime = OnnxRuntime(MODELS / "boston" / "1" / "model.onnx")

    def answer(self, rows: list[list[float]]) -> str:
        x = np.asarray(rows, dtype=np.float64)
        prices = self.runtime.session.run(None, {"features": x.astype(np.float32)})[0][:, 0].tolist()
        outside = ((x < self.lows) | (x > self.highs)).tolist()
        return ",".join(
            f'{{"price":{p!r},"price_usd":{round(p * 1000, 2)!r},"out_of_range":'
            f'{json.dumps([n for n, o in zip(self.names, flags) if o], separators=(",", ":"))}}}'
            for p, flags in zip(prices, outside)
        )


IMDB, REUTERS, IMDB_BAG, BOSTON = Imdb("imdb"), Reuters("reuters"), ImdbBag(), Boston()
for _ in range(3):  # warm-up, as ours before it reports ready
    IMDB.answer("warm up"), REUTERS.answer("warm up"), IMDB_BAG.answer("warm up"), BOSTON.answer([[0.0] * 13])

HEADERS = [(b"content-type", b"application/json")]


def predictions(path: str, body: dict) -> tuple[str, str]:
    """(model reference, the predictions' JSON) for one request body."""
    if path == "/imdb/predict":
        if body.get("version") in (2, "2"):
            return '"model":{"name":"imdb","version":"2"}', IMDB_BAG.answer(body["text"])
        texts = body["texts"] if "texts" in body else [body["text"]]
        return IMDB.ref, ",".join(map(IMDB.answer, texts))
    if path == "/reuters/predict":
        return REUTERS.ref, REUTERS.answer(body["text"], body.get("top_k", 3))
    rows = body["instances"] if "instances" in body else (
        [[record[n] for n in BOSTON.names] for record in body["records"]]
        if "records" in body else [body["features"]]
    )  # fmt: skip
    return '"model":{"name":"boston","version":"1"}', BOSTON.answer(rows)


async def app(scope, receive, send) -> None:  # ASGI: untyped on purpose, no framework
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/readyz":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b'{"ready":true}'})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    model, answers = predictions(scope["path"], json.loads(body))
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body",
                "body": f'{{{model},"predictions":[{answers}]}}'.encode()})  # fmt: skip
