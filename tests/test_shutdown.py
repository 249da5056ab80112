"""A stop loses nothing; SIGHUP reloads every worker in place. Real processes, signals, sockets.

The scenario of issue 13: 40 clients each POST a batch of 1,000 reviews (1.3 MB); SIGTERM comes
0.3 s after they start, once every body has been sent. Plain uvicorn answered 19 of them and
closed the other 21 connections unanswered; ``service.lifecycle.server.DrainingServer`` answers all 40.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.api.book import SAMPLE_REVIEW
from tests.derived import derive_version, flip_sentiment
from tests.serverproc import Server, running_server, start_server, wait_until_ready

CLIENTS = 40
BATCH = 1_000
SENTENCES = [
    SAMPLE_REVIEW,
    "The worst film I have ever seen: boring, stupid and a waste of time.",
    "Not bad at all, though the second half drags and the music is far too loud.",
    "A masterpiece of tension; the ending left me speechless and I want to see it again.",
    "I wanted to like it. I did not, and neither did anyone else in the theatre that night.",
    "Fine for a rainy afternoon, if you do not expect much from the script or the acting.",
    "The photography is gorgeous, the dialogue wooden, and the plot makes very little sense.",
    "Two hours of my life I will never get back. Dull, predictable and badly written.",
]


def batch_body(seed: int) -> bytes:
    """``{"texts": [...]}`` of 1,000 reviews of ~1,300 characters (a realistic IMDB length)."""
    rng = random.Random(seed)
    reviews = []
    for _ in range(BATCH):
        words: list[str] = []
        while sum(map(len, words)) < 1_250:
            words.append(rng.choice(SENTENCES))
        reviews.append(" ".join(words))
    return json.dumps({"texts": reviews}).encode()


def workers_of(server: Server) -> set[int]:
    """Pids of the worker processes of a ``WORKERS > 1`` server (not multiprocessing's tracker)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.process.pid and b"spawn_main" in command:
            pids.add(int(entry.name))
    return pids


def wait_for_log(server: Server, text: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count(text) < count:
        assert server.process.poll() is None, server.log()
        assert time.monotonic() < deadline, f"{count} x {text!r} not logged:\n{server.log()}"
        time.sleep(0.05)


def start(tmp_path: Path, workers: int, **env: str) -> Server:
    """The service with ``workers`` workers, once every worker has started."""
    server = start_server(tmp_path / "server.log", env={"WORKERS": str(workers), **env})
    wait_until_ready(server, timeout=90)
    if workers > 1:
        wait_for_log(server, "Application startup complete.", workers)
    return server


def sigterm_during_batches(
    server: Server, bodies: list[bytes], delay: float = 0.3, then: Callable[[], None] = lambda: None
) -> list[object]:
    """Each body POSTed on its own connection; SIGTERM ``delay`` s after the first starts, once
    every body has been sent; ``then()`` (in the calling thread) while they are answered.
    Each client's (status, predictions) or its error."""
    port = int(server.url.rsplit(":", 1)[1])
    sent = threading.Semaphore(0)
    results: list[object] = [None] * len(bodies)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            connection.request(
                "POST",
                "/imdb/predict",
                body=bodies[index],
                headers={"Content-Type": "application/json"},
            )
            sent.release()  # the whole body is in the kernel's hands
            response = connection.getresponse()
            answer = response.read()
            results[index] = (response.status, len(json.loads(answer)["predictions"]))
        except (OSError, http.client.HTTPException) as error:
            results[index] = f"{type(error).__name__}: {error}"
            sent.release()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for _ in threads:
        assert sent.acquire(timeout=60), "a client could not send its body"
    time.sleep(max(0.0, started + delay - time.monotonic()))
    assert server.process.poll() is None
    server.process.send_signal(signal.SIGTERM)
    then()
    for thread in threads:
        thread.join(120)
    return results


def refused_while_running(server: Server, timeout: float = 60) -> bool:
    """Whether a new connection is refused (the drain has closed the socket) before the exit."""
    port = int(server.url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = server.process.poll() is None
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            return running
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_while_40_large_batches_arrive_answers_all_40(tmp_path, workers):
    bodies = [batch_body(seed) for seed in range(CLIENTS)]
    assert all(1_200_000 < len(body) < 1_400_000 for body in bodies)
    server = start(tmp_path, workers, GRACEFUL_TIMEOUT="60")
    try:
        refused: list[bool] = []
        results = sigterm_during_batches(
            server, bodies, then=lambda: refused.append(refused_while_running(server))
        )
        assert refused == [True], "new connections were still accepted while draining"
        answered = results.count((200, BATCH))
        others = [r for r in results if r != (200, BATCH)]
        assert answered == CLIENTS, f"{answered} of {CLIENTS} answered; others: {others[:5]}"
        assert server.process.wait(90) == 0
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", timeout=2)


def test_shutdown_delay_keeps_serving_while_readyz_says_503(tmp_path):
    server = start(tmp_path, 1, SHUTDOWN_DELAY="2")
    try:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_until_ready(server, timeout=2, status=503)  # at once: the load balancer stops sending
        with httpx.Client(base_url=server.url, timeout=30) as client:  # a new connection
            predicted = client.post("/imdb/predict", json={"text": SAMPLE_REVIEW})
            assert predicted.status_code == 200
            assert predicted.json()["predictions"][0]["label"] == "positive"
            assert client.get("/healthz").status_code == 200
            assert client.get("/v2/health/ready").status_code == 400
        assert server.process.wait(60) == 0
        assert time.monotonic() - signalled >= 2
        assert "still serving for 2.0 s" in server.log()
    finally:
        server.stop()


def test_sighup_to_the_supervisor_reloads_every_worker_in_place(tmp_path, models, artifacts):
    staged = derive_version(artifacts["imdb"], tmp_path / "imdb-2", "2", flip_sentiment)
    server = start(tmp_path, 2, MODELS_DIR=str(models))
    try:
        before = workers_of(server)
        assert len(before) == 2
        shutil.copytree(staged, models / "imdb" / ".2.partial")
        (models / "imdb" / ".2.partial").rename(models / "imdb" / "2")
        server.process.send_signal(signal.SIGHUP)
        wait_for_log(server, "reload: loaded ['imdb/2']", 2)
        versions = {
            httpx.post(server.url + "/imdb/predict", json={"text": SAMPLE_REVIEW}).json()["model"][
                "version"
            ]
            for _ in range(40)  # a new connection each, to either worker
        }
        assert versions == {"2"}
        assert workers_of(server) == before, "the workers were restarted, not reloaded"
        assert "restarting processes" not in server.log()
        assert server.stop() == 0
    finally:
        server.stop()


def worker_environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def test_workers_share_a_run_directory_that_goes_at_exit(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with running_server(tmp_path / "server.log", env={"WORKERS": "2"}) as server:
        wait_for_log(server, "Application startup complete.", 2)
        (worker, *_) = workers_of(server)
        env = worker_environment(worker)
        run = Path(env["KERAS_SERVING_RUN_DIR"])
        assert run.parent == Path(tempfile.gettempdir()) and run.name.startswith("keras-serving-")
        assert env["PROMETHEUS_MULTIPROC_DIR"] == str(run / "metrics")
        assert env["KERAS_SERVING_SUPERVISOR"] == str(server.process.pid)
        assert (run / "metrics").is_dir() and (run / "workers").is_dir()
        # A worker that dies is replaced, and its live gauges leave the metrics.
        gauge = run / "metrics" / f"gauge_livesum_{worker}.db"
        gauge.write_bytes(b"")
        os.kill(worker, signal.SIGKILL)
        wait_for_log(server, f"Child process [{worker}] died", 1)
        assert not gauge.exists()
        wait_for_log(server, "Application startup complete.", 3)
        assert len(workers_of(server)) == 2
        assert server.stop() == 0
    assert not run.exists()


def test_a_user_metrics_folder_is_used_and_kept(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    with running_server(
        tmp_path / "server.log", env={"WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    ) as server:
        wait_for_log(server, "Application startup complete.", 2)
        (worker, *_) = workers_of(server)
        env = worker_environment(worker)
        assert env["PROMETHEUS_MULTIPROC_DIR"] == str(metrics)
        run = Path(env["KERAS_SERVING_RUN_DIR"])
        assert server.stop() == 0
    assert metrics.is_dir() and not run.exists()


def test_a_reload_forwarded_while_a_worker_starts_waits_for_it(tmp_path):
    """SIGHUP's default action would kill a worker still loading its models (one replacing a
    dead worker, say): it reloads once started instead."""
    server = start(tmp_path, 2)
    try:
        victim = min(workers_of(server))
        os.kill(victim, signal.SIGKILL)
        wait_for_log(server, f"Child process [{victim}] died", 1)
        server.process.send_signal(signal.SIGHUP)
        wait_for_log(server, "Application startup complete.", 3)  # the replacement started
        wait_for_log(server, "SIGHUP: reloading models", 2)  # and both workers reloaded
        assert "died" not in server.log().split(f"Child process [{victim}] died", 1)[1]
        assert len(workers_of(server)) == 2
        assert server.stop() == 0
    finally:
        server.stop()


def test_workers_that_cannot_start_stop_the_supervisor_non_zero(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    server = start_server(tmp_path / "server.log", env={"WORKERS": "2", "MODELS_DIR": str(empty)})
    try:
        assert server.process.wait(90) != 0
        assert "REQUIRE_MODELS=any not met" in server.log()
        assert "failed to start" in server.log()
    finally:
        server.stop()
