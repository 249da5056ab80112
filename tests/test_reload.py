"""Hot reload: new versions go live without a restart and without failing a request; a version
that fails to load is reported while the old one keeps serving; the admin endpoint needs its token."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_REVIEW
from tests.derived import add_a_thousand_dollars, derive_version, flip_sentiment
from tests.serverproc import running_server

TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
REVIEWS = [
    SAMPLE_REVIEW,
    "The worst film I have ever seen: boring, stupid and a waste of time.",
    "Not bad at all, though the second half drags.",
    "A masterpiece of tension; the ending left me speechless.",
    "I wanted to like it. I did not.",
    "Fine for a rainy afternoon.",
]


def publish(staged: Path, target: Path) -> None:
    """Copy a version in as a deployment would: under a dot-name, then one rename."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copytree(staged, partial)
    partial.rename(target)


def reload(client: httpx.Client) -> dict:
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def test_reload_is_disabled_without_an_admin_token(api):
    response = api.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["detail"] == "admin endpoints are disabled: set ADMIN_TOKEN to enable them"


def test_reload_needs_the_right_bearer_token(tmp_path, models):
    with running_server(tmp_path / "server.log", env={"MODELS_DIR": str(models), "ADMIN_TOKEN": TOKEN}) as server:
        missing = httpx.post(server.url + "/admin/reload")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(server.url + "/admin/reload", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong admin token"
        almost = httpx.post(server.url + "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert almost.status_code == 403
        right = httpx.post(server.url + "/admin/reload", headers=ADMIN)
        assert right.status_code == 200
        assert right.json()["unchanged"] == ["imdb/1", "reuters/1", "boston/1"]
        assert right.json()["loaded"] == [] and right.json()["failed"] == {}


def test_an_admin_token_shorter_than_16_characters_is_refused_at_start():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token="short")


def test_sighup_loads_a_new_version_without_a_restart(tmp_path, models, artifacts):
    staged = derive_version(artifacts["boston"], tmp_path / "boston-2", "2", add_a_thousand_dollars)
    with running_server(tmp_path / "server.log", env={"MODELS_DIR": str(models)}) as server:
        before = httpx.post(server.url + "/boston/predict", json={"features": SAMPLE_FEATURES}).json()
        publish(staged, models / "boston" / "2")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/readyz").json()["serving"]["boston"] != "2":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        after = httpx.post(server.url + "/boston/predict", json={"features": SAMPLE_FEATURES}).json()
        assert server.process.poll() is None, "the same process serves the new version"
        assert after["model"]["version"] == "2"
        gap = after["predictions"][0]["price"] - before["predictions"][0]["price"]
        assert gap == pytest.approx(1.0, abs=1e-4)
        assert "reload: loaded ['boston/2']" in server.log()


def test_a_version_that_fails_to_load_is_reported_and_the_old_one_keeps_serving(tmp_path, models, artifacts):
    broken = derive_version(artifacts["boston"], tmp_path / "boston-2", "2", add_a_thousand_dollars)
    (broken / "model.keras").write_bytes((broken / "model.keras").read_bytes()[:500])
    with running_server(tmp_path / "server.log", env={"MODELS_DIR": str(models), "ADMIN_TOKEN": TOKEN}) as server:
        client = httpx.Client(base_url=server.url)
        publish(broken, models / "boston" / "2")
        report = reload(client)
        assert report["loaded"] == [] and report["serving"]["boston"] == "1"
        assert "does not match its sha256" in report["failed"]["boston/2"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["failures"].keys() == {"boston/2"}
        answer = client.post("/boston/predict", json={"features": SAMPLE_FEATURES}).json()
        assert answer["model"]["version"] == "1"
        assert "model_load_failures 1.0" in client.get("/metrics").text


def test_a_changed_version_that_fails_to_load_keeps_its_loaded_copy(tmp_path, models):
    with running_server(tmp_path / "server.log", env={"MODELS_DIR": str(models), "ADMIN_TOKEN": TOKEN}) as server:
        client = httpx.Client(base_url=server.url)
        expected = client.post("/boston/predict", json={"features": SAMPLE_FEATURES}).json()
        card = models / "boston" / "1" / "metadata.json"
        card.write_text(card.read_text().replace('"version": "1"', '"version": "4"'))
        report = reload(client)
        assert "still serving the copy loaded before" in report["failed"]["boston/1"]
        assert client.post("/boston/predict", json={"features": SAMPLE_FEATURES}).json() == expected


def test_reloads_under_load_fail_no_request_and_never_mix_versions_in_a_batch(tmp_path, models, artifacts):
    """Eight clients send batches of six reviews (ours and V2) while version 2 is published,
    removed and published again, with a reload after each step. Every answer must be 200, and
    every batch must equal, item by item, the answer of the one version it names."""
    staged = derive_version(artifacts["imdb"], tmp_path / "imdb-2", "2", flip_sentiment)
    v2_body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(REVIEWS)], "data": REVIEWS}]}
    answers: list[tuple[str, str, list[float]]] = []  # (route, version, probabilities)
    failures: list[str] = []
    stop = threading.Event()

    def hammer(route: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    if route == "ours":
                        response = client.post("/imdb/predict", json={"texts": REVIEWS})
                        body = response.json()
                        answer = (body["model"]["version"], [p["probability"] for p in body["predictions"]])
                    else:
                        response = client.post("/v2/models/imdb/infer", json=v2_body)
                        body = response.json()
                        answer = (body["model_version"], body["outputs"][0]["data"])
                    if response.status_code != 200:
                        failures.append(f"{route}: {response.status_code} {response.text[:200]}")
                        continue
                    answers.append((route, *answer))
                except (httpx.HTTPError, KeyError, ValueError) as error:
                    failures.append(f"{route}: {error!r}")

    env = {"MODELS_DIR": str(models), "ADMIN_TOKEN": TOKEN}
    with running_server(tmp_path / "server.log", env=env) as server:
        admin = httpx.Client(base_url=server.url, timeout=60)
        clients = [threading.Thread(target=hammer, args=(route,)) for route in ["ours", "v2"] * 4]
        for thread in clients:
            thread.start()
        reports = []
        try:
            for step in ("publish", "remove", "publish"):
                time.sleep(0.5)
                if step == "publish":
                    publish(staged, models / "imdb" / "2")
                else:
                    shutil.rmtree(models / "imdb" / "2")
                reports.append(reload(admin))
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=30)
        expected = {
            version: admin.post("/imdb/predict", json={"texts": REVIEWS, "version": version}).json()
            for version in ("1", "2")
        }
    expected_probabilities = {
        version: [p["probability"] for p in body["predictions"]] for version, body in expected.items()
    }
    assert failures == []
    assert [r["loaded"] for r in reports] == [["imdb/2"], [], ["imdb/2"]]
    assert reports[1]["unloaded"] == ["imdb/2"]
    assert {version for _, version, _ in answers} == {"1", "2"}, "both versions answered"
    assert {route for route, _, _ in answers} == {"ours", "v2"}
    mixed = [a for a in answers if a[2] != expected_probabilities[a[1]]]
    by_version = {v: sum(1 for a in answers if a[1] == v) for v in ("1", "2")}
    print(f"{len(answers)} batches answered during 3 reloads, by version: {by_version}; "
          f"reload seconds: {[r['seconds'] for r in reports]}")  # fmt: skip
    assert mixed == [], f"{len(mixed)} of {len(answers)} batches differ from their version's answer"
