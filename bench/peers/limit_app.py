"""The limit of the stack: a bare ASGI callable under uvicorn doing what ours does per request,
and nothing else.

It reads the JSON body, tokenizes the review with the shared ``service/contract/vectorize.py``, runs the
same ONNX Runtime session (``service/engine/runtime.py`` on the committed ``model.onnx``), and writes the
same JSON answer. No framework, no validation, no metrics, no logs. Whatever our server costs
beyond this probe is what our own layers add; ``bench/run.py`` runs it beside ours in every run.

    MODELS_DIR=models uvicorn limit_app:app --no-access-log   (PYTHONPATH: the repo and bench/peers)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from service.contract.artifacts import read_word_index, version_folders
from service.engine.runtime import ONNX_FILE, OnnxRuntime
from service.contract.vectorize import WordIndex, hot_positions

MODELS = Path(os.environ.get("MODELS_DIR", "models"))
IMDB = version_folders(MODELS / "imdb")[max(version_folders(MODELS / "imdb"))]
METADATA = json.loads((IMDB / "metadata.json").read_text())
NUM_WORDS = METADATA["preprocessing"]["num_words"]
MODEL_REF = {"name": "imdb", "version": str(METADATA.get("version", IMDB.name))}
WORD_INDEX = WordIndex(read_word_index(IMDB), NUM_WORDS)
RUNTIME = OnnxRuntime(IMDB / ONNX_FILE)
# Warm-up, as ours does before it reports ready: no measured request pays a first call.
RUNTIME.from_positions([hot_positions(WORD_INDEX.encode("warm up"), NUM_WORDS)], NUM_WORDS)

HEADERS = [(b"content-type", b"application/json")]


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
    text = json.loads(body)["text"]
    probability = float(
        RUNTIME.from_positions([hot_positions(WORD_INDEX.encode(text), NUM_WORDS)], NUM_WORDS)[0, 0]
    )
    answer = {
        "model": MODEL_REF,
        "predictions": [
            {"label": "positive" if probability >= 0.5 else "negative", "probability": probability}
        ],
    }
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send(
        {"type": "http.response.body", "body": json.dumps(answer, separators=(",", ":")).encode()}
    )
