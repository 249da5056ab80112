"""Benchmark our server against its peers, side by side, and write bench/RESULTS.md.

For each server in turn (ours, the limit probe, the book-style baseline, BentoML): start it on
loopback as a subprocess, measure its cold start (process start to ``GET /readyz`` 200, polled
every 10 ms), check that it answers the benchmark's inputs correctly, drive the scenarios with
wrk, time a batch of 1,000 raw reviews, read its peak resident memory, stop it. Then render the
figures.

    bash bench/run.sh                 # setup + full run, one worker each: bench/RESULTS.md
    bash bench/run.sh --workers 2     # ours, limit probe, BentoML, 2 workers: RESULTS-workers2.md
    python bench/run.py --smoke       # a few seconds, ours only; writes bench/out/smoke.md

Only the standard library and NumPy (for the Boston test row) are needed; bench/run.sh runs it
with the ``ours`` venv's Python. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
OUT_DIR = BENCH_DIR / "out"
POST_LUA = BENCH_DIR / "wrk" / "post.lua"
HOST = "127.0.0.1"  # loopback only

IMDB_REVIEW = "test/pos/10009_10.txt"  # 235 words, positive
BATCH_SIZE = 1000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Inputs: read from the shared data folder at run time (nothing of the data is committed)
# --------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    review: str
    newswire: str
    boston_row: list[float]
    batch: list[str]
    source: dict[str, str]


def load_inputs(data_dir: Path, batch_size: int = BATCH_SIZE) -> Inputs:
    """One real IMDB test review, the first Reuters test newswire, the first Boston test row,
    and ``batch_size`` IMDB test reviews (half positive, half negative, by file name)."""
    imdb_tar = data_dir / "imdb" / "aclImdb_test.tar.gz"
    with tarfile.open(imdb_tar) as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> str:
            return archive.extractfile(members[name]).read().decode("utf-8")  # type: ignore[union-attr]

        review_name = next(n for n in members if n.endswith(IMDB_REVIEW))
        review = read(review_name)
        pos = sorted(n for n in members if "/test/pos/" in f"/{n}" and n.endswith(".txt"))
        neg = sorted(n for n in members if "/test/neg/" in f"/{n}" and n.endswith(".txt"))
        half = batch_size // 2
        batch = [read(n) for n in pos[:half] + neg[: batch_size - half]]

    newswires = data_dir / "keras" / "reuters46_texts_keras_order.jsonl.gz"
    with gzip.open(newswires, "rt", encoding="utf-8") as stream:
        tests = [row for row in map(json.loads, stream) if row["keras_split"] == "test"]
    first_test = min(tests, key=lambda row: row["keras_pos"])

    import numpy as np  # only here: the Keras split of the Boston rows

    with np.load(data_dir / "keras" / "boston_housing.npz") as boston:
        x = boston["x"]
    order = np.arange(len(x))
    np.random.RandomState(113).shuffle(order)  # keras.datasets.boston_housing, seed 113
    x_test = x[order][int(len(x) * 0.8) :]
    return Inputs(
        review=review,
        newswire=first_test["text"],
        boston_row=[float(v) for v in x_test[0]],
        batch=batch,
        source={
            "review": f"{imdb_tar.name}:{review_name} ({len(review.split())} words)",
            "newswire": f"{newswires.name}: first test newswire, topic {first_test['topic']} "
            f"({len(first_test['text'].split())} words)",
            "boston": f"{(data_dir / 'keras' / 'boston_housing.npz').name}: x_test[0] (seed 113)",
            "batch": f"{imdb_tar.name}: first {half} test/pos + {batch_size - half} test/neg "
            "reviews by file name",
        },
    )


def fallback_inputs() -> Inputs:
    """Smoke mode without the data folder: short made-up inputs, clearly labelled as such."""
    review = "This film was just brilliant: the casting, the story and the direction were great."
    return Inputs(
        review=review,
        newswire="Shares rose after the company said first quarter net profit rose to 12.5 mln dlrs.",
        boston_row=[
            1.23247,
            0.0,
            8.14,
            0.0,
            0.538,
            6.142,
            91.7,
            3.9769,
            4.0,
            307.0,
            21.0,
            396.9,
            18.72,
        ],
        batch=[review] * 20,
        source={"all": "built-in sample texts (the data folder was not found)"},
    )


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    label: str
    python: Path
    command: list[str]
    cwd: Path
    env: dict[str, str]
    routes: dict[str, str]  # model -> POST path
    one: Callable[[str, Any], dict]  # (model, one input) -> request body
    many: Callable[[str, list], dict]  # (model, inputs) -> request body
    predictions: Callable[[Any], list]  # response JSON -> list of per-input predictions
    venv: Path | None = None
    note: str = ""
    workers: int = 1  # worker processes serving requests (reported in the servers table)
    models: tuple[str, ...] = ("imdb", "reuters", "boston")  # the models it serves
    batch: bool = True  # whether it serves the batch ({"texts": [...]})
    forms: tuple[str, ...] = ("one",)  # request forms: one input, "v2" (IMDB version 2), "records"
    size_of: str | None = None  # installed size: another server's venv (the limit probe: ours)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "KERAS_BACKEND", "VIRTUAL_ENV"}
    }
    env.update(extra)
    return env


def _contract_one(model: str, value: Any) -> dict:
    return {"features": value} if model == "boston" else {"text": value}


def _contract_many(model: str, values: list) -> dict:
    return {"instances": values} if model == "boston" else {"texts": values}


def _bentoml_one(model: str, value: Any) -> dict:
    return _contract_many(model, [value])


def ours_workers(ours_args: str) -> int:
    """Ours' worker count: ``--workers N`` in ``--ours-args``, else WORKERS in the environment
    (which ``python -m service`` reads too), else 1."""
    words = shlex.split(ours_args)
    for i, word in enumerate(words):
        if word == "--workers" and i + 1 < len(words):
            return int(words[i + 1])
        if word.startswith("--workers="):
            return int(word.split("=", 1)[1])
    return int(os.environ.get("WORKERS") or 1)


def make_servers(args: argparse.Namespace) -> dict[str, Server]:
    models_dir = str(args.models_dir)
    peers_path = f"{REPO_DIR}{os.pathsep}{BENCH_DIR / 'peers'}"
    ours_python = (
        Path(args.ours_python)
        if args.ours_python
        else (
            VENVS / "ours" / "bin" / "python"
            if (VENVS / "ours" / "bin" / "python").exists()
            else Path(sys.executable)
        )
    )
    contract_routes = {m: f"/{m}/predict" for m in ("imdb", "reuters", "boston")}
    ours_venv = ours_python.parent.parent if ours_python.parent.name == "bin" else None
    bentoml_home = OUT_DIR / "bentoml-home"
    workers = {
        "ours": ours_workers(args.ours_args),
        "limit": args.limit_workers,
        "bentoml": args.bentoml_workers,
    }
    return {
        "ours": Server(
            name="ours",
            label="ours (`python -m service`)",
            python=ours_python,
            command=[
                str(ours_python),
                "-m",
                "service",
                "--host",
                HOST,
                "--port",
                "{port}",
                *shlex.split(args.ours_args),
            ],
            cwd=REPO_DIR,  # `-m service` runs the work tree's service/; the venv brings the deps
            env=_clean_env(MODELS_DIR=models_dir),
            routes=contract_routes,
            one=_contract_one,
            many=_contract_many,
            predictions=lambda body: body["predictions"],
            venv=ours_venv,
            note="ONNX Runtime on model.onnx, no TensorFlow, Keras, jax or scipy; default settings"
            + (f", `{args.ours_args}`" if args.ours_args.strip() else ""),
            workers=workers["ours"],
            forms=("one", "v2", "records"),
        ),
        "limit": Server(
            name="limit",
            label="limit probe (bare ASGI, the fastest correct work)",
            python=ours_python,
            command=[
                str(ours_python),
                "-m",
                "uvicorn",
                "limit_app:app",
                "--host",
                HOST,
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
                # The same event loop as ours (EVENT_LOOP's default): the probe measures what our
                # layers add on the same stack. uvicorn's own default, uvloop, starves some
                # connections after a load run (see README, "Operating it").
                "--loop",
                "asyncio",
                *(["--workers", str(workers["limit"])] if workers["limit"] > 1 else []),
            ],
            cwd=BENCH_DIR / "peers",
            env=_clean_env(MODELS_DIR=models_dir, PYTHONPATH=peers_path),
            routes=contract_routes,
            one=_contract_one,
            many=_contract_many,
            predictions=lambda body: body["predictions"],
            venv=None,
            note="ours' venv: a bare ASGI callable under uvicorn computing our answers with the "
            "least Python it can (the shared tokenizer, kernel-row sums for the multi-hot "
            "networks, the TF-IDF bag, ONNX Runtime for Boston), no framework, validation, "
            "metrics or logs; the asyncio loop, as ours",
            workers=workers["limit"],
            size_of="ours",
            forms=("one", "v2", "records"),
        ),
        "baseline": Server(
            name="baseline",
            label="baseline (FastAPI + `model.predict`)",
            python=VENVS / "baseline" / "bin" / "python",
            command=[
                str(VENVS / "baseline" / "bin" / "python"),
                "-m",
                "uvicorn",
                "baseline_app:app",
                "--host",
                HOST,
                "--port",
                "{port}",
            ],
            cwd=BENCH_DIR / "peers",
            env=_clean_env(
                MODELS_DIR=models_dir, PYTHONPATH=peers_path, KERAS_BACKEND="tensorflow"
            ),
            routes=contract_routes,
            one=_contract_one,
            many=_contract_many,
            predictions=lambda body: body["predictions"],
            venv=VENVS / "baseline",
            note="TensorFlow backend, sync routes, `model.predict(x)` per request",
        ),
        "bentoml": Server(
            name="bentoml",
            label="BentoML (adaptive batching)",
            python=VENVS / "bentoml" / "bin" / "python",
            command=[
                str(VENVS / "bentoml" / "bin" / "bentoml"),
                "serve",
                "bentoml_service:KerasModels",
                "--host",
                HOST,
                "--port",
                "{port}",
            ],
            cwd=BENCH_DIR / "peers",
            env=_clean_env(
                MODELS_DIR=models_dir,
                PYTHONPATH=peers_path,
                KERAS_BACKEND="tensorflow",
                BENTOML_HOME=str(bentoml_home),
                BENTOML_DO_NOT_TRACK="True",
                BENCH_BENTOML_WORKERS=str(workers["bentoml"]),
            ),
            routes={m: f"/{m}_predict" for m in ("imdb", "reuters", "boston")},
            one=_bentoml_one,
            many=_contract_many,
            predictions=lambda body: body,
            venv=VENVS / "bentoml",
            note="TensorFlow backend, `batchable=True` + `predict_on_batch`",
            workers=workers["bentoml"],
        ),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 120.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


# --------------------------------------------------------------------------------------------
# Process tree: memory, stop
# --------------------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, stack = [], [root]
    while stack and len(tree) < 10_000:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU time of the server's process tree so far (from /proc/PID/stat): taken
    around a scenario, divided by its requests, the server's CPU per request."""
    ticks = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_kib(root: int, key: str) -> tuple[int, int]:
    """Sum of ``key`` (VmHWM or VmRSS, KiB) over the process tree, and how many processes."""
    total, count = 0, 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        if match:
            total += int(match.group(1))
            count += 1
    return total, count


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"process {process.pid} did not exit after SIGKILL")


# --------------------------------------------------------------------------------------------
# Load: wrk, or a small Python loop for the smoke when wrk is absent
# --------------------------------------------------------------------------------------------


def run_wrk(url: str, body_file: Path, connections: int, seconds: int) -> dict:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(POST_LUA),
        url,
        "--",
        str(body_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
            result["tool"] = "wrk"
            return result
    raise RuntimeError(f"wrk gave no summary (exit {done.returncode}): {done.stderr.strip()[:300]}")


def run_python_load(port: int, path: str, body: bytes, seconds: float) -> dict:
    """Sequential keep-alive requests for ``seconds`` (smoke fallback: one connection)."""
    latencies, status_errors, socket_errors = [], 0, 0
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    started = time.perf_counter()
    deadline = started + seconds
    for _ in range(1_000_000):
        if time.perf_counter() >= deadline:
            break
        t0 = time.perf_counter()
        try:
            status, _ = http_request(port, "POST", path, body, conn=conn)
        except (OSError, http.client.HTTPException):
            socket_errors += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            continue
        latencies.append((time.perf_counter() - t0) * 1e6)
        status_errors += status >= 400
    conn.close()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] if latencies else 0

    return {
        "tool": "python",
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "rps": len(latencies) / elapsed,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "errors_status": status_errors,
        "errors_connect": socket_errors,
        "errors_read": 0,
        "errors_write": 0,
        "errors_timeout": 0,
    }


# --------------------------------------------------------------------------------------------
# One server, start to stop
# --------------------------------------------------------------------------------------------

SCENARIOS = [
    # key, model, connections, title, request form (Server.forms)
    ("imdb-c1", "imdb", 1, "IMDB, one raw review per request, 1 connection", "one"),
    ("imdb-c16", "imdb", 16, "IMDB, one raw review per request, 16 connections", "one"),
    ("imdb-c64", "imdb", 64, "IMDB, one raw review per request, 64 connections", "one"),
    ("imdb-c256", "imdb", 256, "IMDB, one raw review per request, 256 connections", "one"),
    ("imdb2-c16", "imdb", 16, "IMDB version 2 (TF-IDF bag), one raw review per request, 16 connections", "v2"),
    ("imdb2-c64", "imdb", 64, "IMDB version 2 (TF-IDF bag), one raw review per request, 64 connections", "v2"),
    ("reuters-c16", "reuters", 16, "Reuters, one raw newswire per request, 16 connections", "one"),
    ("reuters-c64", "reuters", 64, "Reuters, one raw newswire per request, 64 connections", "one"),
    ("boston-c16", "boston", 16, "Boston housing, one `features` row per request, 16 connections", "one"),
    ("boston-records-c16", "boston", 16, "Boston housing, one named record per request, 16 connections", "records"),
    ("boston-records-c64", "boston", 64, "Boston housing, one named record per request, 64 connections", "records"),
]  # fmt: skip
BOSTON_FEATURES = ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX",
                   "PTRATIO", "B", "LSTAT")  # fmt: skip
SMOKE_SCENARIOS = ["imdb-c16"]
ORDER = ("ours", "limit", "baseline", "bentoml")  # the default servers, in the report's order
MODEL_NAMES = {"imdb": "IMDB", "reuters": "Reuters", "boston": "Boston"}
NOISY_SHARE = 0.05  # other processes using more than this share of the cores make a run noisy


def sample(server: Server, model: str, prediction: dict) -> str:
    if model == "imdb":
        return f"{prediction['label']} {prediction['probability']:.6f}"
    if model == "reuters":
        return f"{prediction['label']} {prediction['top'][0]['probability']:.6f}"
    return f"{prediction['price']:.4f}"


def bench_server(
    server: Server, inputs: Inputs, args: argparse.Namespace, scenarios: list[str]
) -> dict:
    result: dict[str, Any] = {
        "name": server.name,
        "available": False,
        "note": server.note,
        "workers": server.workers,
        "serves": list(server.models),
        "serves_batch": server.batch,
        "size_of": server.size_of,
        "forms": list(server.forms),
    }
    if not server.python.exists():
        result["error"] = f"{server.python} is missing: run bench/setup.sh"
        return result
    if server.name == "ours" and not (REPO_DIR / "service" / "__main__.py").exists():
        result["error"] = "service/ (python -m service) does not exist yet"
        return result

    body_dir = OUT_DIR / "bodies" / server.name
    body_dir.mkdir(parents=True, exist_ok=True)
    one_input = {"imdb": inputs.review, "reuters": inputs.newswire, "boston": inputs.boston_row}
    bodies = {
        m: json.dumps(server.one(m, v)).encode() for m, v in one_input.items() if m in server.models
    }
    for model, body in bodies.items():
        (body_dir / f"{model}.json").write_bytes(body)
    other_forms = {
        "v2": ("imdb", {"text": inputs.review, "version": 2}),
        "records": ("boston", {"records": [dict(zip(BOSTON_FEATURES, inputs.boston_row))]}),
    }
    for form, (model, body) in other_forms.items():
        if form in server.forms:
            (body_dir / f"{model}-{form}.json").write_text(json.dumps(body))
    batch_body = json.dumps(server.many("imdb", inputs.batch)).encode()

    port = free_port()
    command = [part.replace("{port}", str(port)) for part in server.command]
    result["cold_starts_s"] = repeated_cold_starts(server, command, port, args)
    log_path = OUT_DIR / "logs" / f"{server.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"{server.name}: starting on {HOST}:{port}: {shlex.join(command)}")
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=server.cwd,
            env=server.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _measure(
                server,
                process,
                started,
                port,
                bodies,
                batch_body,
                body_dir,
                inputs,
                args,
                scenarios,
                result,
            )
        except Exception as error:  # report and go on with the next server
            result["error"] = f"{type(error).__name__}: {error}"
            log(f"{server.name}: {result['error']}")
        finally:
            stop(process)
    if not result["available"]:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        result["log_tail"] = tail
    return result


def explain_cost(port: int, review: str, requests: int) -> dict:
    """Median time of one review with and without ``"explain": true``, one request at a time on
    one connection (loopback adds ~0.1 ms to the server's time). Ours only: peers don't explain."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    medians = {}
    try:
        for label, body in (("plain", {"text": review}),
                            ("explain", {"text": review, "explain": True})):  # fmt: skip
            payload, timings = json.dumps(body).encode(), []
            for attempt in range(requests + 1):  # the first one is a warm-up
                t0 = time.perf_counter()
                status, _ = http_request(port, "POST", "/imdb/predict", payload, conn=conn)
                if status != 200:
                    raise RuntimeError(f"{label} request answered {status}")
                if attempt:
                    timings.append(time.perf_counter() - t0)
            medians[f"{label}_median_s"] = statistics.median(timings)
    finally:
        conn.close()
    log(f"ours: one review {medians['plain_median_s'] * 1000:.2f} ms, "
        f"with explain {medians['explain_median_s'] * 1000:.2f} ms")  # fmt: skip
    return {"words": len(review.split()), "requests": requests, **medians}


def repeated_cold_starts(
    server: Server, command: list[str], port: int, args: argparse.Namespace
) -> list[float]:
    """Start, wait for /readyz 200, stop: ``--cold-starts`` times. One start is noisy (page
    cache, scheduler); the report gives the median with the spread."""
    times = []
    for _ in range(args.cold_starts):
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=server.cwd, env=server.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = started + args.ready_timeout
            while time.perf_counter() < deadline and process.poll() is None:
                try:
                    if http_request(port, "GET", "/readyz", timeout=1.0)[0] == 200:
                        times.append(time.perf_counter() - started)
                        break
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.01)
        finally:
            stop(process)
    log(f"{server.name}: cold starts {', '.join(f'{t:.2f}' for t in times)} s")
    return times


def _measure(
    server: Server,
    process: subprocess.Popen,
    started: float,
    port: int,
    bodies: dict[str, bytes],
    batch_body: bytes,
    body_dir: Path,
    inputs: Inputs,
    args: argparse.Namespace,
    scenarios: list[str],
    result: dict,
) -> None:
    # Cold start: process start → /readyz 200, polled every 10 ms (bounded by --ready-timeout).
    deadline = started + args.ready_timeout
    ready_at, last_answer = None, "no answer"
    for _ in range(int(args.ready_timeout / 0.01) + 1):
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} before /readyz answered 200")
        try:
            status, payload = http_request(port, "GET", "/readyz", timeout=1.0)
            last_answer = f"last answer {status}: {payload[:300].decode(errors='replace')}"
            if status == 200:
                ready_at = time.perf_counter()
                break
        except (OSError, http.client.HTTPException):
            pass
        if time.perf_counter() >= deadline:
            break
        time.sleep(0.01)
    if ready_at is None:
        raise RuntimeError(
            f"/readyz did not answer 200 within {args.ready_timeout:.0f} s ({last_answer})"
        )
    result["cold_start_s"] = ready_at - started
    result["rss_ready_kib"], result["processes"] = memory_kib(process.pid, "VmRSS")
    log(
        f"{server.name}: ready in {result['cold_start_s']:.2f} s, "
        f"RSS {result['rss_ready_kib'] * 1024 / 1e6:.0f} MB in {result['processes']} process(es)"
    )

    # Correctness: each endpoint answers 200 with one prediction (and the batch with all).
    result["samples"] = {}
    for model, body in bodies.items():
        status, payload = http_request(port, "POST", server.routes[model], body)
        if status != 200:
            raise RuntimeError(f"POST {server.routes[model]} answered {status}: {payload[:200]!r}")
        predictions = server.predictions(json.loads(payload))
        if len(predictions) != 1:
            raise RuntimeError(
                f"POST {server.routes[model]}: {len(predictions)} predictions, not 1"
            )
        result["samples"][model] = sample(server, model, predictions[0])
    result["available"] = True

    # Load scenarios.
    result["scenarios"], result["answers"] = {}, {}
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    for key, model, connections, _title, form in SCENARIOS:
        if key not in scenarios or model not in server.models or form not in server.forms:
            continue  # not asked for, or a model or form this server does not serve
        url = f"http://{HOST}:{port}{server.routes[model]}"
        body_file = body_dir / (f"{model}.json" if form == "one" else f"{model}-{form}.json")
        try:
            status, payload = http_request(port, "POST", server.routes[model], body_file.read_bytes())
            if status != 200:
                raise RuntimeError(f"answered {status}: {payload[:200]!r}")
            result["answers"][key] = json.loads(payload)
            if use_wrk:
                if args.warmup > 0:
                    run_wrk(url, body_file, connections, args.warmup)
                cpu_before = cpu_seconds(process.pid)
                figures = run_wrk(url, body_file, connections, args.duration)
                cpu = cpu_seconds(process.pid) - cpu_before
                figures["cpu_us_per_request"] = cpu * 1e6 / max(1, figures["requests"])
            else:
                figures = run_python_load(port, server.routes[model], body_file.read_bytes(),
                                          args.duration)  # fmt: skip
        except Exception as error:
            figures = {"error": f"{type(error).__name__}: {error}"}
        result["scenarios"][key] = figures
        if "rps" in figures:
            log(
                f"{server.name}: {key}: {figures['rps']:.0f} req/s, p50 {figures['p50_us'] / 1000:.1f} ms, "
                f"p99 {figures['p99_us'] / 1000:.1f} ms, errors {errors(figures)}"
                + (f", {figures['cpu_us_per_request']:.0f} µs CPU per request"
                   if "cpu_us_per_request" in figures else "")  # fmt: skip
            )
        else:
            log(f"{server.name}: {key}: {figures['error']}")
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} during {key}")

    # The batch of raw reviews in one request: median of --batch-requests timed requests.
    result["batch"] = (
        time_batch(server, port, batch_body, len(inputs.batch), args.batch_requests)
        if server.batch
        else {"not_served": True}
    )

    if server.name == "ours":
        result["explain"] = explain_cost(port, inputs.review, args.batch_requests * 5)

    result["peak_rss_kib"], result["processes"] = memory_kib(process.pid, "VmHWM")
    result["rss_end_kib"], _ = memory_kib(process.pid, "VmRSS")
    log(f"{server.name}: peak RSS {result['peak_rss_kib'] * 1024 / 1e6:.0f} MB")


def time_batch(server: Server, port: int, batch_body: bytes, size: int, requests: int) -> dict:
    """``requests`` timed batch requests over one keep-alive connection after one warm-up (which
    also checks the count of predictions): median, min, max; or the error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    try:
        timings = []
        for attempt in range(requests + 1):  # the first one is a warm-up
            t0 = time.perf_counter()
            status, payload = http_request(
                port, "POST", server.routes["imdb"], batch_body, conn=conn
            )
            elapsed = time.perf_counter() - t0
            if status != 200:
                raise RuntimeError(f"batch request answered {status}: {payload[:200]!r}")
            if attempt == 0:
                count = len(server.predictions(json.loads(payload)))
                if count != size:
                    raise RuntimeError(f"batch of {size} answered {count} predictions")
            else:
                timings.append(elapsed)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        conn.close()
    log(f"{server.name}: batch of {size}: median {statistics.median(timings) * 1000:.0f} ms")
    return {
        "size": size,
        "requests": len(timings),
        "median_s": statistics.median(timings),
        "min_s": min(timings),
        "max_s": max(timings),
        "bytes": len(batch_body),
    }


def errors(figures: dict) -> int:
    return sum(
        figures.get(k, 0)
        for k in (
            "errors_status",
            "errors_connect",
            "errors_read",
            "errors_write",
            "errors_timeout",
        )
    )


# --------------------------------------------------------------------------------------------
# Machine, versions, sizes
# --------------------------------------------------------------------------------------------


def machine() -> dict:
    info: dict[str, Any] = {}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu"] = models[0].strip() if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    info["usable_cores"] = len(os.sched_getaffinity(0))
    meminfo = Path("/proc/meminfo").read_text()
    info["memory_gib"] = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) / 1024**2
    try:
        os_release = Path("/etc/os-release").read_text()
        info["os"] = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release, re.M).group(1)
    except (OSError, AttributeError):
        info["os"] = platform.system()
    info["kernel"] = platform.release()
    return info


def busy() -> dict:
    """What else runs: load average and heavy processes (training, tests) other than us."""
    load = os.getloadavg()
    found = subprocess.run(["pgrep", "-af", "training|pytest"], capture_output=True, text=True)
    mine = {os.getpid(), os.getppid()}
    heavy = [
        line
        for line in found.stdout.splitlines()
        if line and int(line.split()[0]) not in mine and "pgrep" not in line
    ]
    return {"load": [round(v, 2) for v in load], "heavy": heavy[:10]}


def cpu_snapshot() -> dict:
    """Machine-wide user+nice+system CPU seconds (/proc/stat) and this run's own share: its
    process and every child it waited for (servers with their workers, wrk)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    own = os.times()
    return {
        "busy_s": sum(values[:3]) / os.sysconf("SC_CLK_TCK"),
        "wall_s": time.monotonic(),
        "own_s": own.user + own.system + own.children_user + own.children_system,
    }


def other_cpu(start: dict, end: dict) -> dict:
    """CPU that other processes used during the run, in core-seconds and as a share of the cores."""
    elapsed = end["wall_s"] - start["wall_s"]
    others = max(0.0, (end["busy_s"] - start["busy_s"]) - (end["own_s"] - start["own_s"]))
    capacity = elapsed * len(os.sched_getaffinity(0))
    return {
        "core_seconds": round(others, 1),
        "elapsed_s": round(elapsed, 1),
        "share": round(others / capacity, 3) if capacity else 0.0,
    }


def served_folder(model_folder: Path) -> Path:
    """The version folder the service serves by default: the stable version of the model's
    ``rollout.json``, else the highest ``<n>/`` (or the model folder itself, the flat layout of
    before versions). bench/ runs without the project installed."""
    rollout = model_folder / "rollout.json"
    if rollout.is_file() and (model_folder / json.loads(rollout.read_text())["stable"]).is_dir():
        return model_folder / json.loads(rollout.read_text())["stable"]
    versions = [p for p in model_folder.glob("*/metadata.json") if p.parent.name.isdigit()]
    return max(versions, key=lambda p: int(p.parent.name)).parent if versions else model_folder


def models_info(models_dir: Path) -> dict:
    """Which artifacts were served: the folder, and each model's version and creation time."""
    info: dict[str, Any] = {"dir": str(models_dir), "repo": models_dir == REPO_DIR / "models"}
    for name in ("imdb", "reuters", "boston"):
        try:
            metadata = json.loads((served_folder(models_dir / name) / "metadata.json").read_text("utf-8"))
            info[name] = (
                f"version {metadata.get('version', '?')}, created {metadata.get('created', '?')}"
            )
        except (OSError, ValueError):
            info[name] = "no readable metadata.json"
    return info


def package_versions(python: Path, packages: list[str]) -> dict[str, str]:
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        f"names = {packages!r}\n"
        "out = {'python': platform.python_version()}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def site_packages_mb(venv: Path) -> float | None:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        return None
    done = subprocess.run(["du", "-sk", str(found[0])], capture_output=True, text=True, timeout=300)
    return int(done.stdout.split()[0]) * 1024 / 1e6 if done.returncode == 0 else None


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else ""
    return first.split(" Copyright")[0].replace("wrk ", "").strip()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def ms(us: float | None) -> str:
    return "–" if us is None else f"{us / 1000:.2f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    value = a / b
    return f"{value:.3g}×" if value < 10 else f"{value:,.0f}×"


def render(report: dict) -> str:
    servers = report["servers"]
    ours = servers.get("ours", {})
    order = [name for name in ORDER if name in servers]
    labels = report["labels"]
    counts = sorted({s.get("workers", 1) for s in servers.values()})
    lines = [
        "# Benchmark results"
        + ("" if counts == [1] else f": {' and '.join(map(str, counts))} workers per server"),
        "",
        f"Run {report['date']} with `{report['command']}` "
        f"({report['duration']} s per scenario after a {report['warmup']} s warm-up, wrk -t1). "
        "Produced by `bench/run.py`; see `bench/README.md` for how each figure is measured.",
        "",
    ]
    if report["smoke"]:
        lines += [
            "> **Smoke run**: seconds-long scenarios, for checking the harness, not for quoting.",
            "",
        ]
    busy_before, busy_after = report["busy_before"], report["busy_after"]
    others = report["other_cpu"]
    heavy = sorted({line.split()[0] for line in busy_before["heavy"] + busy_after["heavy"]})
    if heavy or others["share"] > NOISY_SHARE:
        lines += [
            "> **Noisy**: other processes used "
            f"{others['share']:.0%} of the machine's CPU during this run "
            f"({others['core_seconds']} core-seconds in {others['elapsed_s']} s)"
            + (f"; {len(heavy)} training/test processes were running" if heavy else "")
            + ". Re-run on an idle machine before quoting these figures.",
            "",
        ]
    m = report["machine"]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable by this run)",
        f"- Memory: {m['memory_gib']:.1f} GiB",
        f"- OS: {m['os']}, Linux {m['kernel']}",
        f"- Other processes' CPU during the run: {others['share']:.1%} of the cores "
        f"({others['core_seconds']} core-seconds in {others['elapsed_s']} s); "
        f"load average before the run {busy_before['load']}",
        f"- wrk {report['versions']['wrk']}; the load generator runs on the same cores as the server",
        "",
        "## Servers and versions",
        "",
        "| server | what | workers | Python | packages |",
        "|---|---|---:|---|---|",
    ]
    for name in order:
        versions = dict(report["versions"].get(name, {}))
        python = versions.pop("python", "?")
        packages = ", ".join(f"{k} {v}" for k, v in versions.items())
        lines.append(
            f"| {labels[name]} | {servers[name].get('note', '')} "
            f"| {servers[name].get('workers', 1)} | {python} | {packages} |"
        )
    lines += [
        "",
        "Inputs: " + "; ".join(f"{k}: {v}" for k, v in report["inputs"].items()) + ".",
        "",
    ]
    served = report["models"]
    lines += [
        f"Models: `{served['dir']}`"
        + ("" if served["repo"] else " (**not the repository's `models/`**)")
        + ": "
        + "; ".join(f"{name} {served[name]}" for name in ("imdb", "reuters", "boston"))
        + ".",
        "",
    ]

    unavailable = [n for n in order if not servers[n].get("available")]
    for name in unavailable:
        tail = servers[name].get("log_tail") or []
        last = f" Last line of its log: `{tail[-1].strip()[:200]}`" if tail else ""
        lines += [
            f"**{labels[name]}: not available**: {servers[name].get('error', 'unknown error')}.{last}",
            "",
        ]
    partial = [n for n in order if served_text(servers[n]) != "everything"]
    for name in partial:
        lines += [
            (
                f"{labels[name]} serves {served_text(servers[name])}: the other scenarios, the "
                "batch and the other answers are marked *not served* (not a failure)."
            ),
            "",
        ]

    lines += [
        "## Throughput and latency",
        "",
        "Ratios compare ours with each peer in this run: `req/s ours÷peer` above 1 means ours "
        "serves more; `p99 ours÷peer` below 1 means ours answers faster at the tail. "
        "On the limit probe's row they are ours÷limit: how close ours comes to the stack's "
        "limit (req/s: 1 is the limit; p99: 1 is the limit's tail).",
        "",
    ]
    for key, model, _connections, title, form in SCENARIOS:
        rows = [(n, servers[n].get("scenarios", {}).get(key)) for n in order]
        if not any(figures for _, figures in rows):
            continue
        lines += [
            f"### {title}",
            "",
            "| server | req/s | p50 | p90 | p99 | errors (non-2xx / socket) | req/s ours÷peer | p99 ours÷peer | CPU per request |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ours_figures = ours.get("scenarios", {}).get(key) or {}
        for name, figures in rows:
            if not figures:
                served = model in servers[name].get("serves", [model]) and \
                    form in servers[name].get("forms", ["one"])  # fmt: skip
                text = "not available" if served else "not served"
                lines.append(f"| {labels[name]} | {text} | | | | | | | |")
                continue
            if "error" in figures:
                lines.append(f"| {labels[name]} | failed: {figures['error'][:80]} | | | | | | | |")
                continue
            socket_errors = errors(figures) - figures.get("errors_status", 0)
            if not figures.get("requests"):
                lines.append(
                    f"| {labels[name]} | 0: no answer within {report['duration']} s "
                    f"| | | | {figures.get('errors_status', 0)} / {socket_errors} | | | |"
                )
                continue
            peer = name != "ours"
            if figures.get("tool") == "python":
                lines.append(
                    f"| {labels[name]} (no wrk: Python loop, 1 connection) | {figures['rps']:,.0f} "
                    f"| {ms(figures['p50_us'])} | {ms(figures['p90_us'])} | {ms(figures['p99_us'])} "
                    f"| {figures.get('errors_status', 0)} / {socket_errors} | | | |"
                )
                continue
            lines.append(
                f"| {labels[name]} | {figures['rps']:,.0f} | {ms(figures['p50_us'])} | {ms(figures['p90_us'])} "
                f"| {ms(figures['p99_us'])} | {figures.get('errors_status', 0)} / {socket_errors} "
                f"| {ratio(ours_figures.get('rps'), figures['rps']) if peer else ''} "
                f"| {ratio(ours_figures.get('p99_us'), figures['p99_us']) if peer else ''} "
                f"| {cpu_text(figures)} |"
            )
        limit_figures = dict(rows).get("limit") or {}
        if ours_figures.get("rps") and limit_figures.get("rps"):
            share = ours_figures["rps"] / limit_figures["rps"]
            tail = ratio(ours_figures.get("p99_us"), limit_figures.get("p99_us"))
            sentence = f"ours serves {share:.0%} of the limit probe's req/s, at {tail} its p99."
            lines += ["", f"Ours÷limit: {sentence}"]
        lines.append("")

    lines += [
        "## Batch, start-up, memory, install size",
        "",
        f"| server | batch of {report['batch_size']} raw reviews (median of {report['batch_requests']}) "
        "| cold start (to /readyz 200): median of the repeated starts (min–max; first start) | RSS when ready | peak RSS after the load | processes "
        "| installed size (site-packages) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    sizes = report["sizes_mb"]
    for name in order:
        s = servers[name]
        batch = s.get("batch", {})
        if "median_s" in batch:
            batch_text = f"{batch['median_s'] * 1000:,.0f} ms"
        elif "error" in batch:
            batch_text = f"failed: {batch['error'][:60]}"
        else:
            batch_text = "not served" if batch.get("not_served") else "–"
        cold = f"{s['cold_start_s']:.2f} s" if "cold_start_s" in s else "–"
        if s.get("cold_starts_s"):
            runs = s["cold_starts_s"]
            cold = (f"{statistics.median(runs):.2f} s ({min(runs):.2f}–{max(runs):.2f}; "
                    f"first {s.get('cold_start_s', float('nan')):.2f} s)")  # fmt: skip
        rss = f"{s['rss_ready_kib'] * 1024 / 1e6:,.0f} MB" if "rss_ready_kib" in s else "–"
        peak = f"{s['peak_rss_kib'] * 1024 / 1e6:,.0f} MB" if "peak_rss_kib" in s else "–"
        size = f"{sizes[name]:,.0f} MB" if sizes.get(name) else "–"
        if s.get("size_of"):
            size = f"the same venv as {s['size_of']}"
        lines.append(
            f"| {labels[name]} | {batch_text} | {cold} | {rss} | {peak} | {s.get('processes', '–')} | {size} |"
        )
    explain = report["servers"].get("ours", {}).get("explain")
    if explain:
        lines += [
            "",
            f"Explanations (ours only; the peers have none): one {explain['words']}-word review, one "
            f"request at a time, median of {explain['requests']}: "
            f"{explain['plain_median_s'] * 1000:.2f} ms without `explain`, "
            f"{explain['explain_median_s'] * 1000:.2f} ms with `\"explain\": true` (every distinct "
            "word's effect, one batched model call).",
        ]
    if sizes.get("tensorflow"):
        lines += [
            "",
            f"For comparison, a fresh venv with `tensorflow-cpu` alone: "
            f"{sizes['tensorflow']:,.0f} MB of site-packages.",
        ]
    lines += [
        "",
        "Memory is the sum over the server's process tree of VmHWM (peak) or VmRSS (now) "
        "from `/proc/<pid>/status`; installed size is `du` of the venv's site-packages "
        "(pip and setuptools included in each, about 15 MB). MB = 10⁶ bytes throughout.",
        "",
    ]

    lines += [
        "## Same answers",
        "",
        "Each server's answer to the single inputs above "
        "(IMDB: label and probability; Reuters: top topic and its probability; Boston: price "
        "in thousands of dollars). TensorFlow and Keras' numpy backend agree to float32 "
        "rounding.",
        "",
        "| server | IMDB | Reuters | Boston |",
        "|---|---|---|---|",
    ]
    for name in order:
        samples = servers[name].get("samples", {})
        serves = servers[name].get("serves", list(MODEL_NAMES))
        cells = [samples.get(m, "–") if m in serves else "not served" for m in MODEL_NAMES]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    lines += [""]
    ours_answers = servers.get("ours", {}).get("answers", {})
    limit_answers = servers.get("limit", {}).get("answers", {})
    compared = sorted(set(ours_answers) & set(limit_answers))
    if compared:
        differ = [key for key in compared if not same_answers(ours_answers[key], limit_answers[key])]
        lines += [
            "The limit probe's answer to each scenario's request, compared with ours (the same "
            "JSON, every number within 1e-5 relative): "
            + (f"equal in all {len(compared)} scenarios." if not differ
               else f"**different** in {', '.join(differ)}."),  # fmt: skip
            "",
        ]

    lines += targets(report)
    return "\n".join(lines).rstrip() + "\n"


def cpu_text(figures: dict) -> str:
    cpu = figures.get("cpu_us_per_request")
    return f"{cpu:,.0f} µs" if cpu else ""


def same_answers(ours: Any, limit: Any, tolerance: float = 1e-5) -> bool:
    """The limit probe's answer is ours: the same structure, labels and names, every number
    within float32 tolerance (relative, at least 1)."""
    if isinstance(ours, float | int) and isinstance(limit, float | int) and not isinstance(ours, bool):
        return abs(ours - limit) <= tolerance * max(1.0, abs(ours))
    if isinstance(ours, dict) and isinstance(limit, dict):
        return ours.keys() == limit.keys() and all(same_answers(ours[k], limit[k]) for k in ours)
    if isinstance(ours, list) and isinstance(limit, list):
        return len(ours) == len(limit) and all(same_answers(a, b) for a, b in zip(ours, limit))
    return ours == limit


def served_text(result: dict) -> str:
    """What a server serves, for the report: "everything", or e.g. "IMDB single reviews only"."""
    serves = result.get("serves", list(MODEL_NAMES))
    if set(serves) == set(MODEL_NAMES) and result.get("serves_batch", True):
        return "everything"
    return (
        " and ".join(MODEL_NAMES[m] for m in serves)
        + (" single reviews" if serves == ["imdb"] else " single inputs")
        + ("" if result.get("serves_batch", True) else " only")
    )


def targets(report: dict) -> list[str]:
    servers = report["servers"]

    def fig(name: str, key: str, item: str) -> float | None:
        return (servers.get(name, {}).get("scenarios", {}).get(key) or {}).get(item)

    checks: list[tuple[str, str, bool | None]] = []

    def add(
        text: str, value: float | None, limit: float | None, better: str, unit: str = ""
    ) -> None:
        if value is None or limit is None:
            checks.append((text, "not measured", None))
            return
        met = value >= limit if better == "high" else value <= limit
        checks.append((text, f"{value:,.3g}{unit}", met))

    def quotient(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    def percent(a: float | None, b: float | None) -> float | None:
        return 100 * a / b if a and b else None

    add(
        "IMDB 16 conn.: req/s ≥ 3× BentoML's",
        quotient(fig("ours", "imdb-c16", "rps"), fig("bentoml", "imdb-c16", "rps")),
        3,
        "high",
        "×",
    )
    add(
        "IMDB 16 conn.: req/s ≥ 50× the baseline's",
        quotient(fig("ours", "imdb-c16", "rps"), fig("baseline", "imdb-c16", "rps")),
        50,
        "high",
        "×",
    )
    add(
        "IMDB 16 conn.: p99 ≤ ⅕ of BentoML's",
        quotient(fig("ours", "imdb-c16", "p99_us"), fig("bentoml", "imdb-c16", "p99_us")),
        0.2,
        "low",
        "×",
    )
    for connections in (16, 64):
        key = f"imdb-c{connections}"
        add(
            f"IMDB {connections} conn.: req/s ≥ 60% of the limit probe's (issue 14, set against "
            "the probe of then: our own code path without our layers; today's probe is the true limit)",
            percent(fig("ours", key, "rps"), fig("limit", key, "rps")),
            60,
            "high",
            "%",
        )
    limit_targets = [("imdb", "IMDB version 1", 0.8), ("imdb2", "IMDB version 2", 0.8),
                     ("reuters", "Reuters", 0.8), ("boston-records", "Boston records", 0.7)]  # fmt: skip
    for prefix, title, share in limit_targets:
        for connections in (16, 64):
            key = f"{prefix}-c{connections}"
            add(
                f"{title} {connections} conn.: req/s ≥ {share:.0%} of the true limit probe's (issue 25)",
                percent(fig("ours", key, "rps"), fig("limit", key, "rps")),
                share * 100,
                "high",
                "%",
            )
            add(
                f"{title} {connections} conn.: p99 ≤ 1.5× the true limit probe's (issue 25)",
                quotient(fig("ours", key, "p99_us"), fig("limit", key, "p99_us")),
                1.5,
                "low",
                "×",
            )
    add(
        "IMDB 16 conn.: CPU per single-review request ≤ 230 µs (issue 25)",
        fig("ours", "imdb-c16", "cpu_us_per_request"),
        230,
        "low",
        " µs",
    )
    add(
        "IMDB 16 conn.: req/s ≥ 8× BentoML's (issue 25's aim)",
        quotient(fig("ours", "imdb-c16", "rps"), fig("bentoml", "imdb-c16", "rps")),
        8,
        "high",
        "×",
    )
    add(
        "IMDB 64 conn.: p99 ≤ 2× the limit probe's",
        quotient(fig("ours", "imdb-c64", "p99_us"), fig("limit", "imdb-c64", "p99_us")),
        2,
        "low",
        "×",
    )
    add(
        "IMDB 64 conn.: p99 ≤ ⅓ of BentoML's",
        quotient(fig("ours", "imdb-c64", "p99_us"), fig("bentoml", "imdb-c64", "p99_us")),
        1 / 3,
        "low",
        "×",
    )
    add(
        "IMDB 64 conn.: req/s ≥ 2× BentoML's",
        quotient(fig("ours", "imdb-c64", "rps"), fig("bentoml", "imdb-c64", "rps")),
        2,
        "high",
        "×",
    )
    c256 = servers.get("ours", {}).get("scenarios", {}).get("imdb-c256")
    text = "IMDB 256 conn.: no socket errors"
    if not c256 or "error" in c256:
        checks.append((text, "not measured", None))
    elif not c256.get("requests"):
        checks.append((text, "no answer", False))
    else:
        socket_errors = errors(c256) - c256.get("errors_status", 0)
        checks.append((text, f"{socket_errors:,} of {c256['requests']:,} requests",
                       socket_errors == 0))  # fmt: skip
    add(
        "Reuters 16 conn.: req/s ≥ 3× BentoML's",
        quotient(fig("ours", "reuters-c16", "rps"), fig("bentoml", "reuters-c16", "rps")),
        3,
        "high",
        "×",
    )
    add(
        "Boston 16 conn.: req/s ≥ 3× BentoML's",
        quotient(fig("ours", "boston-c16", "rps"), fig("bentoml", "boston-c16", "rps")),
        3,
        "high",
        "×",
    )
    ours = servers.get("ours", {})
    batch = ours.get("batch", {}).get("median_s")
    add(
        f"batch of {report['batch_size']} raw reviews < 200 ms",
        batch * 1000 if batch else None,
        200,
        "low",
        " ms",
    )
    add(
        f"batch of {report['batch_size']} raw reviews ≤ 60 ms (issue 25)",
        batch * 1000 if batch else None,
        60,
        "low",
        " ms",
    )
    cold = (statistics.median(ours["cold_starts_s"]) if ours.get("cold_starts_s")
            else ours.get("cold_start_s"))  # fmt: skip
    add("cold start < 10 s (performance issue)", cold, 10, "low", " s")
    add("cold start ≤ 1.5 s (lean-serving issue)", cold, 1.5, "low", " s")
    bentoml = servers.get("bentoml", {})
    bentoml_cold = (statistics.median(bentoml["cold_starts_s"]) if bentoml.get("cold_starts_s")
                    else bentoml.get("cold_start_s"))  # fmt: skip
    add("cold start, all three models ≤ 0.2× BentoML's with one (issue 14; the bench now also "
        "loads IMDB's version 2, see bench/AB.md for the three alone)",
        quotient(cold, bentoml_cold), 0.2, "low", "×")  # fmt: skip
    peak = ours.get("peak_rss_kib")
    add("peak RSS ≤ 300 MB after the load", peak * 1024 / 1e6 if peak else None, 300, "low", " MB")
    add("peak RSS ≤ 150 MB after load and a short load test (issue 14; the same note)",
        peak * 1024 / 1e6 if peak else None, 150, "low", " MB")  # fmt: skip
    size = report["sizes_mb"].get("ours")
    add("serving dependencies ≤ 800 MB installed", size, 800, "low", " MB")
    add("serving site-packages ≤ 250 MB, a fresh venv with `pip install .` (issue 14)",
        size, 250, "low", " MB")  # fmt: skip
    explained = ours.get("explain", {}).get("explain_median_s")
    add("one review with explain < 10 ms (explanations issue)",
        explained * 1000 if explained else None, 10, "low", " ms")  # fmt: skip

    counts = {n: s.get("workers", 1) for n, s in servers.items()}
    title = "## Targets (ours, from this run)"
    intro = []
    if any(count != 1 for count in counts.values()):
        listed = ", ".join(f"{n} {c}" for n, c in counts.items())
        title = f"## Targets (ours, from this run; workers: {listed})"
        intro = [
            (
                "The targets are stated for one worker per server; against more workers they "
                "are indicative only."
            ),
            "",
        ]
    lines = [
        title,
        "",
        *intro,
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    for text, value, met in checks:
        lines.append(
            f"| {text} | {value} | {'yes' if met else 'n/a' if met is None else '**no**'} |"
        )
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds, ours only: 1 s of IMDB at 16 connections, 2 batch "
        "requests; writes bench/out/smoke.md, exits 1 on any failure",
    )
    parser.add_argument(
        "--servers",
        default=None,
        help=f"comma-separated subset of {','.join(ORDER)} (default: all; smoke: ours)",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of {','.join(k for k, *_ in SCENARIOS)}",
    )
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds per scenario (10; smoke 1)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up seconds per scenario (2; smoke 0)"
    )
    parser.add_argument(
        "--batch-requests", type=int, default=None, help="timed batch requests (10; smoke 2)"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=180.0, help="seconds to wait for /readyz"
    )
    parser.add_argument(
        "--cold-starts", type=int, default=5,
        help="extra start-to-ready-to-stop cycles per server; the report gives their median",
    )  # fmt: skip
    parser.add_argument("--models-dir", type=Path, default=REPO_DIR / "models")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("BENCH_DATA_DIR", REPO_DIR.parent / "shared" / "data")),
    )
    parser.add_argument(
        "--ours-python",
        default=None,
        help="Python with the serving deps (default: bench/.venvs/ours, else this one)",
    )
    parser.add_argument(
        "--ours-args", default="", help="extra flags for python -m service, e.g. '--workers 2'"
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="the multi-worker run: N worker processes for ours (--workers N), the limit probe "
        "and BentoML; its defaults are --servers ours,limit,bentoml (the baseline is one "
        "process) and --output bench/RESULTS-workersN.md",
    )  # fmt: skip
    parser.add_argument(
        "--bentoml-workers", type=int, default=None,
        help="BentoML's worker processes (BENCH_BENTOML_WORKERS for bench/peers/bentoml_service.py;"
        " 1, or --workers)",
    )  # fmt: skip
    parser.add_argument(
        "--limit-workers", type=int, default=None,
        help="the limit probe's uvicorn worker processes (uvicorn --workers; 1, or --workers)",
    )  # fmt: skip
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python load loop (1 connection)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report path (bench/RESULTS.md; smoke: bench/out/smoke.md)",
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.duration = args.duration if args.duration is not None else (1 if smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if smoke else 2)
    args.batch_requests = (
        args.batch_requests if args.batch_requests is not None else (2 if smoke else 10)
    )
    workers = args.workers
    if workers is not None and workers < 1:
        parser.error("--workers must be at least 1")
    if workers is not None and not any(
        w == "--workers" or w.startswith("--workers=") for w in shlex.split(args.ours_args)
    ):
        args.ours_args = f"{args.ours_args} --workers {workers}".strip()
    if args.bentoml_workers is None:
        args.bentoml_workers = workers or 1
    if args.limit_workers is None:
        args.limit_workers = workers or 1
    default_servers = (
        "ours" if smoke else "ours,limit,bentoml" if workers is not None else ",".join(ORDER)
    )
    args.servers = (args.servers or default_servers).split(",")
    args.scenarios = (
        args.scenarios.split(",")
        if args.scenarios
        else (SMOKE_SCENARIOS if smoke else [k for k, *_ in SCENARIOS])
    )
    args.output = args.output or (
        OUT_DIR / "smoke.md"
        if smoke
        else BENCH_DIR / (f"RESULTS-workers{workers}.md" if workers is not None else "RESULTS.md")
    )
    args.models_dir = args.models_dir.resolve()
    if args.duration < 1 or args.batch_requests < 1:
        parser.error("--duration and --batch-requests must be at least 1")
    if args.bentoml_workers < 1 or args.limit_workers < 1:
        parser.error("--bentoml-workers and --limit-workers must be at least 1")
    try:
        ours_workers(args.ours_args)
    except ValueError:
        parser.error(f"--ours-args: cannot read the worker count in {args.ours_args!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    missing = [
        n
        for n in ("imdb", "reuters", "boston")
        if not any((args.models_dir / n).glob("*/model.keras"))
    ]
    if missing:
        log(
            f"models not available in {args.models_dir}: {', '.join(missing)} "
            "(train them first; see training/README.md)"
        )
        return 2
    before = busy()
    cpu_start = cpu_snapshot()
    if not args.smoke and (before["heavy"] or before["load"][0] > 0.7):
        log(
            f"the machine is busy (load {before['load']}, {len(before['heavy'])} training/test "
            "processes): figures will be marked noisy"
        )
    if args.data_dir.is_dir():
        inputs = load_inputs(args.data_dir)
    elif args.smoke:
        log(f"data folder {args.data_dir} not found: smoke uses built-in sample texts")
        inputs = fallback_inputs()
    else:
        log(f"data folder {args.data_dir} not found (use --data-dir)")
        return 2

    all_servers = make_servers(args)
    unknown = [n for n in args.servers if n not in all_servers]
    if unknown:
        log(f"unknown server(s): {', '.join(unknown)}")
        return 2
    results = {}
    for name in args.servers:
        results[name] = bench_server(all_servers[name], inputs, args, args.scenarios)

    cpu_end = cpu_snapshot()
    versions = {"wrk": wrk_version()}
    wanted = {
        "ours": ["onnxruntime", "numpy", "fastapi", "uvicorn", "pydantic", "keras", "jax", "scipy"],
        "limit": ["numpy", "uvicorn"],
        "baseline": ["tensorflow-cpu", "keras", "numpy", "fastapi", "uvicorn"],
        "bentoml": ["bentoml", "tensorflow-cpu", "keras", "numpy"],
    }
    for name in args.servers:
        versions[name] = package_versions(all_servers[name].python, wanted[name])
    sizes = {}
    for name in args.servers:
        venv = all_servers[name].venv  # None for the limit probe: it runs in ours' venv
        sizes[name] = site_packages_mb(venv) if venv and (venv / "pyvenv.cfg").exists() else None
    if not args.smoke and (VENVS / "tensorflow").exists():
        sizes["tensorflow"] = site_packages_mb(VENVS / "tensorflow")

    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "smoke": args.smoke,
        "duration": args.duration,
        "warmup": args.warmup,
        "batch_size": len(inputs.batch),
        "batch_requests": args.batch_requests,
        "machine": machine(),
        "busy_before": before,
        "busy_after": busy(),
        "other_cpu": other_cpu(cpu_start, cpu_end),
        "versions": versions,
        "sizes_mb": sizes,
        "inputs": inputs.source,
        "models": models_info(args.models_dir),
        "labels": {name: all_servers[name].label for name in args.servers},
        "servers": results,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = OUT_DIR / f"{'smoke' if args.smoke else 'results'}-{stamp}.json"
    raw.write_text(json.dumps(report, indent=2) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(report))
    log(f"wrote {args.output} (raw figures: {raw.relative_to(REPO_DIR)})")

    failed = [n for n, r in results.items() if not r.get("available")]
    for name in failed:
        log(f"{name}: not available: {results[name].get('error')}")
    if args.smoke:
        problems = (
            failed
            + [
                f"{n}:{k}"
                for n, r in results.items()
                for k, f in r.get("scenarios", {}).items()
                if "error" in f or errors(f) or not f.get("requests")
            ]
            + [
                f"{n}:batch"
                for n, r in results.items()
                if r.get("available")
                and "median_s" not in r.get("batch", {})
                and not r.get("batch", {}).get("not_served")
            ]
        )
        if problems:
            log(f"smoke failed: {', '.join(problems)}")
            return 1
        log("smoke passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
