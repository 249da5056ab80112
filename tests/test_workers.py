"""Several workers are one service: a reload (admin, SIGHUP or a change found by polling) reaches
every worker, metrics are totals over the workers, and every probe answers the same whichever
worker answers it. Real processes, ``WORKERS=2``, each request on a fresh connection (the kernel
hands each new connection to whichever worker accepts first)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from service.api.book import SAMPLE_REVIEW
from service.lifecycle.poll import DiskScan, scan_disk, what_changed
from service.serving.registry import Registry, ServedModel
from service.lifecycle.workers import WorkerGroup, WorkersDidNotApply
from tests.derived import derive_version, flip_sentiment
from tests.serverproc import REPO, Server, running_server

TOKEN = "0123456789abcdef0123"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FRESH = {"Connection": "close"}


# ---- helpers ----


@pytest.fixture(scope="module")
def imdb_2(tmp_path_factory, artifacts: dict[str, Path]) -> Path:
    """A real IMDB version 2 (sentiment flipped), made once for the module."""
    return derive_version(
        artifacts["imdb"], tmp_path_factory.mktemp("derived") / "imdb-2", "2", flip_sentiment
    )


def publish(staged: Path, target: Path, truncate: bool = False) -> None:
    """Copy a version in as a deployment would: under a dot-name, then one rename; or, with
    ``truncate``, as a careless copy caught halfway: ``model.keras`` cut short."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copytree(staged, partial)
    if truncate:
        model = partial / "model.keras"
        model.write_bytes(model.read_bytes()[:1000])
    partial.rename(target)


def workers(tmp_path: Path, models: Path, **env: str) -> AbstractContextManager[Server]:
    return running_server(
        tmp_path / "server.log",
        env={"WORKERS": "2", "MODELS_DIR": str(models), "ADMIN_TOKEN": TOKEN,
             "ACCESS_LOG": "false", **env},
    )  # fmt: skip


def versions_answering(server: Server, requests: int) -> Counter[str]:
    """Which IMDB version answered each of ``requests`` predictions, each on a new connection."""
    answered: Counter[str] = Counter()
    for _ in range(requests):
        response = httpx.post(
            server.url + "/imdb/predict", json={"texts": [SAMPLE_REVIEW]}, headers=FRESH, timeout=30
        )
        assert response.status_code == 200, response.text
        answered[response.json()["model"]["version"]] += 1
    return answered


def eventually(check: Callable[[], bool], timeout: float, server: Server) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, server.log()[-3000:]
        time.sleep(0.05)
    return time.monotonic() - started


def all_serve(server: Server, version: str, requests: int = 12) -> Callable[[], bool]:
    return lambda: versions_answering(server, requests) == {version: requests}


def scrape(server: Server) -> str:
    response = httpx.get(server.url + "/metrics", headers=FRESH)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


# ---- the worker group's files, in one process ----


def test_a_group_reload_waits_for_every_live_worker_and_names_the_late_ones(tmp_path):
    import asyncio

    group = WorkerGroup(tmp_path, supervisor=os.getpid())
    (tmp_path / "workers").mkdir()
    assert group.generation() == 0 and group.next_generation() == 1 and group.next_generation() == 2
    group.record(2, Registry())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "workers" / f"{dead.pid}.json").write_text(
        json.dumps({"pid": dead.pid, "generation": 0, "serving": {}, "failures": {}})
    )
    states = asyncio.run(group.applied(2, timeout=1))
    assert list(states) == [os.getpid()], "a dead worker's file is not waited for"

    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "workers" / f"{late.pid}.json").write_text(
            json.dumps({"pid": late.pid, "generation": 1, "serving": {}, "failures": {}})
        )
        with pytest.raises(WorkersDidNotApply, match=f"worker\\(s\\) {late.pid} within 0.3 s"):
            asyncio.run(group.applied(2, timeout=0.3))
    finally:
        late.kill()
        late.wait()
    group.leave()
    assert not (tmp_path / "workers" / f"{os.getpid()}.json").exists()


def served(
    registry_models: dict[str, dict[int, str]], failures: dict[str, str] | None = None
) -> Registry:
    """A registry serving the given versions with the given fingerprints (no model loaded)."""
    models = {
        name: {
            v: ServedModel(name, str(v), {}, None, fingerprint)  # type: ignore[arg-type]
            for v, fingerprint in versions.items()
        }
        for name, versions in registry_models.items()
    }
    return Registry(models, failures or {}, tuple(registry_models))


def test_polling_reloads_on_new_changed_and_removed_versions_and_retries_a_failure_once_its_files_change(
    tmp_path, artifacts
):
    models = tmp_path / "models"
    shutil.copytree(artifacts["imdb"], models / "imdb" / "1")
    disk = scan_disk(models)
    fingerprint = disk.models["imdb"][1]
    assert what_changed(served({"imdb": {1: fingerprint}}), ["imdb"], disk, {}) is None
    assert what_changed(served({"imdb": {1: "old"}}), ["imdb"], disk, {}) == "imdb/1 changed"
    assert (
        what_changed(served({"imdb": {1: fingerprint, 2: "x"}}), ["imdb"], disk, {})
        == "imdb/2 was removed"
    )
    assert what_changed(served({"imdb": {}}), ["imdb"], disk, {}) == "imdb/1 is new"
    missing = served({"imdb": {1: fingerprint}, "boston": {}}, {"boston": "no artifact folder"})
    assert what_changed(missing, ["imdb", "boston"], disk, {}) is None, "still missing: no reload"
    kept = served({"imdb": {1: fingerprint}, "boston": {1: "x"}}, {"boston": "no artifact folder"})
    assert what_changed(kept, ["imdb", "boston"], disk, {}) is None, "a reload would keep boston/1"

    half = models / "imdb" / "2"  # copied in place, not renamed: model.keras is half there
    shutil.copytree(artifacts["imdb"], half)
    whole = (half / "model.keras").read_bytes()
    (half / "model.keras").write_bytes(whole[: len(whole) // 2])
    failed = served({"imdb": {1: fingerprint}}, {"imdb/2": "does not match its sha256"})
    first = scan_disk(models)
    assert what_changed(failed, ["imdb"], first, {}) == "imdb/2 changed since it failed"
    assert what_changed(failed, ["imdb"], scan_disk(models), first.signatures) is None, "no retry"
    (half / "model.keras").write_bytes(whole)
    assert what_changed(failed, ["imdb"], scan_disk(models), first.signatures) == (
        "imdb/2 changed since it failed"
    )
    shutil.rmtree(half)
    assert what_changed(failed, ["imdb"], scan_disk(models), {}) == "imdb/2 failed and was removed"
    shutil.copytree(artifacts["imdb"], models / "spam" / "1")
    assert what_changed(failed, ["imdb"], scan_disk(models), {}) == "model folders added or removed"
    assert isinstance(first, DiskScan)


def test_metrics_of_several_processes_add_up_in_any_one_of_them(tmp_path):
    """prometheus-client's multiprocess mode, as the workers use it: two processes count, a
    third scrapes; the gauges combine as documented (ready: the minimum over live workers)."""
    script = (
        "import sys; from service.observe.metrics import Metrics; from service.serving.registry import Registry\n"
        "m = Metrics(); m.record_batch('imdb', '1', int(sys.argv[1]))\n"
        "m.model_ready.labels('imdb').set(int(sys.argv[2]))\n"
        "from prometheus_client import generate_latest\n"
        "print(generate_latest(m.exposed()).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    for size, ready in ((3, 1), (4, 0)):
        subprocess.run(
            [sys.executable, "-c", script, str(size), str(ready)], env=env, check=True,
            capture_output=True,
        )  # fmt: skip
    text = subprocess.run(
        [sys.executable, "-c", script, "5", "1"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert sample(text, "predictions_total", '{model="imdb",version="1"}') == 12
    assert sample(text, "prediction_batch_size_count", '{model="imdb"}') == 3
    assert sample(text, "model_ready", '{model="imdb"}') == 0, "one worker not ready: not ready"


# ---- real processes, WORKERS=2 ----


def test_one_admin_reload_reaches_both_workers(tmp_path, models, imdb_2):
    with workers(tmp_path, models) as server:
        assert versions_answering(server, 20) == {"1": 20}
        publish(imdb_2, models / "imdb" / "2")
        response = httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["loaded"] == ["imdb/2"] and report["serving"]["imdb"] == "2"
        assert len(report["workers"]) == 2
        assert all(serving["imdb"] == "2" for serving in report["workers"].values())
        assert versions_answering(server, 120) == {"2": 120}
        print(f"group reload applied by both workers in {report['seconds']} s")


def test_sighup_to_the_supervisor_reaches_both_workers_within_2_seconds(tmp_path, models, imdb_2):
    with workers(tmp_path, models) as server:
        publish(imdb_2, models / "imdb" / "2")
        server.process.send_signal(signal.SIGHUP)
        eventually(all_serve(server, "2", requests=4), timeout=10, server=server)
        assert versions_answering(server, 120) == {"2": 120}
        assert server.process.poll() is None
        took = last_reload_after_sighup(server.log())
        print(f"SIGHUP: both workers serve version 2 {took:.2f} s after the supervisor got it")
        assert took < 2.0


def last_reload_after_sighup(log: str) -> float:
    """Seconds from the supervisor's SIGHUP to the last worker's swap, by the server's own log
    (a client polling on a busy machine would measure itself as much as the server)."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    received = next(_time(line) for line in lines if line["message"].startswith("Received SIGHUP"))
    # A worker loads version 2 once: in a reload, or, if it was still starting when the SIGHUP
    # came, in its start-up (it loads again before serving when a reload was asked meanwhile).
    swaps = [
        _time(line) for line in lines if line["message"].startswith("model imdb version 2 ready")
    ]
    assert len(swaps) == 2, f"each worker loads version 2 once: {swaps}"
    return max(swaps) - received


def _time(line: dict) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


@pytest.mark.parametrize("processes", ["2", "1"])
def test_polling_serves_new_versions_unloads_removed_ones_and_waits_for_a_whole_copy(
    tmp_path, models, imdb_2, processes
):
    with workers(tmp_path, models, MODEL_POLL_SECONDS="0.5", WORKERS=processes) as server:
        publish(imdb_2, models / "imdb" / "2")
        took = eventually(all_serve(server, "2"), timeout=10, server=server)
        shutil.rmtree(models / "imdb" / "2")
        eventually(all_serve(server, "1"), timeout=10, server=server)

        half = models / "imdb" / "2"  # metadata.json there, model.keras still being copied
        publish(imdb_2, half, truncate=True)
        whole = (imdb_2 / "model.keras").read_bytes()
        eventually(
            lambda: "imdb/2" in httpx.get(server.url + "/readyz", headers=FRESH).json()["failures"],
            timeout=10, server=server,
        )  # fmt: skip
        time.sleep(1.5)  # three more scans
        assert versions_answering(server, 20) == {"1": 20}, "half a version is never served"
        (half / "model.keras").write_bytes(whole)
        eventually(all_serve(server, "2"), timeout=10, server=server)
        readiness = httpx.get(server.url + "/readyz", headers=FRESH).json()
        assert readiness["failures"] == {} and readiness["serving"]["imdb"] == "2"
        print(f"polling, {processes} worker(s): a new version served by all within {took:.2f} s")


def test_metrics_are_totals_over_the_workers_and_equal_from_scrape_to_scrape(tmp_path, models):
    with workers(tmp_path, models) as server:
        before = sample(scrape(server), "predictions_total", '{model="imdb",version="1"}') or 0
        predictions = 60
        assert versions_answering(server, predictions) == {"1": predictions}
        by_worker = predictions_by_worker(server)
        assert len(by_worker) == 2 and all(by_worker.values()), f"both answered: {by_worker}"
        assert sum(by_worker.values()) == before + predictions
        print(
            f"predictions counted by each worker: {by_worker}; every scrape: {before + predictions}"
        )
        scrapes = [scrape(server) for _ in range(5)]
        counted = [
            sample(text, "predictions_total", '{model="imdb",version="1"}') for text in scrapes
        ]
        assert counted == [before + predictions] * 5
        for text in scrapes:
            for model in ("imdb", "reuters", "boston"):
                assert sample(text, "model_ready", f'{{model="{model}"}}') == 1
                assert sample(text, "model_default_version", f'{{model="{model}"}}') == 1
            assert sample(text, "model_load_failures") == 0


def predictions_by_worker(server: Server) -> dict[int, float]:
    """IMDB version 1 predictions counted by each worker, read from its own metrics file (how
    the test knows the fresh connections reached both workers)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    counted: dict[int, float] = {}
    for pid in map(int, children.read_text().split()):
        environ = dict(
            entry.split("=", 1)
            for entry in Path(f"/proc/{pid}/environ").read_text().split("\0")
            if "=" in entry
        )
        if "PROMETHEUS_MULTIPROC_DIR" not in environ or "spawn_main" not in _cmdline(pid):
            continue
        counters = Path(environ["PROMETHEUS_MULTIPROC_DIR"]) / f"counter_{pid}.db"
        counted[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(counters)])
            for sample in metric.samples
            if sample.name == "predictions_total" and sample.labels["version"] == "1"
        )
    return counted


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def test_probes_and_the_model_list_answer_the_same_from_every_worker(tmp_path, models, imdb_2):
    with workers(tmp_path, models) as server:
        publish(imdb_2, models / "imdb" / "2")
        assert (
            httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60).status_code == 200
        )
        for path in ("/readyz", "/models"):
            bodies = {httpx.get(server.url + path, headers=FRESH).text for _ in range(20)}
            assert len(bodies) == 1, bodies
        assert json.loads(bodies.pop())["models"][0]["versions"] == ["1", "2"]


def test_no_request_fails_during_a_group_reload_under_load(tmp_path, models, imdb_2):
    failures: list[str] = []
    answered: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                response = httpx.post(
                    server.url + "/imdb/predict", json={"texts": [SAMPLE_REVIEW] * 8},
                    headers=FRESH, timeout=30,
                )  # fmt: skip
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    answered[response.json()["model"]["version"]] += 1
            except httpx.HTTPError as error:
                failures.append(repr(error))

    with workers(tmp_path, models) as server:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            publish(imdb_2, models / "imdb" / "2")
            report = httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60).json()
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert failures == []
    assert len(report["workers"]) == 2 and answered.keys() == {"1", "2"}
    print(f"under load: {dict(answered)} answers by version, none failed")


def test_two_workers_answer_a_keep_alive_client_without_a_delayed_ack_stall(tmp_path):
    """The workers' shared socket has TCP_NODELAY (asyncio would not set it on uvicorn's socket):
    without it each answer's body waited for the client's delayed ACK, about 40 ms."""
    with running_server(tmp_path / "server.log", env={"WORKERS": "2"}) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:  # one keep-alive connection
            client.post("/imdb/predict", json={"text": "warm up"})
            durations = []
            for _ in range(30):
                started = time.perf_counter()
                assert client.post("/imdb/predict", json={"text": "A fine film."}).status_code == 200
                durations.append(time.perf_counter() - started)
    assert statistics.median(durations) < 0.02, sorted(durations)
