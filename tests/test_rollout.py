"""Rollouts (``models/NAME/rollout.json``): a stable version, a sticky canary share, a shadow whose
agreement with stable is counted, the ``stable``/``canary`` labels, and a broken file that fails
its reload and leaves the rollout in force.

The routing and shadow tests run against real processes with ``WORKERS=2`` (each keyed request on
a fresh connection, which the kernel hands to either worker) over a copy of the models with real
derived versions: ``boston/2`` prices $1,000 higher than ``boston/1``, ``imdb/2`` and
``boston/3`` answer exactly as version 1 (a new version number over the same network).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_REVIEW
from service.serving.rollout import ROLLOUT_FILE, Rollout, RolloutFile, bucket, read_file, settle
from service.serving.shadow import compared
from service.observe.drift import Signals
from tests.derived import add_a_thousand_dollars, derive_version
from tests.serverproc import Server, running_server

TOKEN = "0123456789abcdef0123"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FRESH = {"Connection": "close"}


def unchanged(model: object) -> None:
    """A new version number over the very same network: it answers exactly as version 1."""


# ---- the file and the rule, in one process ----


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"canary": "2", "canary_percent": 10}, "stable: Field required"),
        ({"stable": "1", "canary": "2"}, "'canary' and 'canary_percent' go together"),
        ({"stable": "1", "canary_percent": 10}, "'canary' and 'canary_percent' go together"),
        ({"stable": "1", "canary": "2", "canary_percent": 101}, "canary_percent: Input should be less than or equal to 100"),
        ({"stable": "1", "canary": "2", "canary_percent": -1}, "canary_percent: Input should be greater than or equal to 0"),
        ({"stable": "1", "shadow": "1"}, "stable, canary and shadow must be different versions, got ['1', '1']"),
        ({"stable": "1", "canary_percentage": 10}, "canary_percentage: Extra inputs are not permitted"),
        ({"stable": "one"}, "stable: String should match pattern"),
        ({"stable": "1", "shadow": "7"}, "shadow names version 7, which is not served (served versions: 1, 2)"),
    ],
)  # fmt: skip
def test_an_invalid_rollout_file_is_refused_naming_the_file_and_the_field(
    tmp_path, content, message
):
    path = tmp_path / ROLLOUT_FILE
    path.write_text(json.dumps(content))
    with pytest.raises(Exception) as raised:
        read_file(path, {1, 2})
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_a_shadow_is_compared_by_label_for_a_classifier_and_by_value_for_a_regressor():
    labels = compared(Signals(labels=["pos", "neg", "pos"]), Signals(labels=["pos", "pos", "pos"]))
    assert labels == (2, 1, [])
    values = compared(Signals(values=[20.0, 30.0]), Signals(values=[20.0, 31.5]))
    assert values == (1, 1, [0.0, 1.5])
    with pytest.raises(ValueError, match="stable answered 2 items, the shadow 1"):
        compared(Signals(values=[20.0, 30.0]), Signals(values=[20.0]))


def test_a_file_that_is_not_json_is_refused_too(tmp_path):
    (tmp_path / ROLLOUT_FILE).write_text('{"stable": "1",')
    rollout, problem = settle(tmp_path, {1, 2}, None)
    assert problem is not None and "is not a valid rollout" in problem
    assert rollout is not None and rollout.stable == "2" and rollout.file is None
    assert "serving the highest version, 2, until it is fixed" in problem


def test_versions_may_be_numbers_or_strings_and_no_file_means_the_highest(tmp_path):
    assert (
        RolloutFile.model_validate({"stable": 1, "canary": 2.0, "canary_percent": 5}).canary == "2"
    )
    rollout, problem = settle(tmp_path, {1, 3}, None)
    assert problem is None and rollout == Rollout(None, "3")


def test_a_broken_file_keeps_the_rollout_in_force_before(tmp_path):
    path = tmp_path / ROLLOUT_FILE
    path.write_text('{"stable": "1", "canary": "2", "canary_percent": 30}')
    before, problem = settle(tmp_path, {1, 2}, None)
    assert problem is None and before is not None and before.canary == "2"
    path.write_text('{"stable": "1", "canary": "2", "canary_percent": 300}')
    after, problem = settle(tmp_path, {1, 2}, before)
    assert problem is not None and "still applying the rollout in force before: stable 1" in problem
    assert after is not None and (after.file, after.canary_percent) == (before.file, 30)
    assert after.digest == hashlib.sha256(path.read_bytes()).hexdigest(), "the poller's fingerprint"


def test_the_bucket_of_a_key_is_sha256_of_model_and_key_so_every_process_agrees():
    digest = hashlib.sha256(b"boston\ncustomer-42").digest()
    assert bucket("boston", "customer-42") == int.from_bytes(digest[:8], "big") % 100
    assert len({bucket("imdb", f"key-{i}") for i in range(2_000)}) == 100, "every bucket is used"
    rollout = Rollout.of(RolloutFile(stable="1", canary="2", canary_percent=20), {1, 2}, "")
    keyed = Counter(rollout.choose("boston", f"user-{i}") for i in range(10_000))
    assert within_binomial(keyed["2"], 10_000, 0.20)
    assert {rollout.choose("boston", "user-7") for _ in range(50)} == {
        rollout.choose("boston", "user-7")
    }


def within_binomial(hits: int, trials: int, share: float, sigmas: float = 5.0) -> bool:
    """``hits`` is a plausible draw of Binomial(trials, share): within 5 standard deviations
    (a false alarm once in 1.7 million runs)."""
    return abs(hits - trials * share) <= sigmas * math.sqrt(trials * share * (1 - share))


# ---- real processes ----


@pytest.fixture(scope="module")
def rollout_models(tmp_path_factory, artifacts: dict[str, Path]) -> Path:
    """boston/1, boston/2 (+$1,000), boston/3 (= 1); imdb/1, imdb/2 (= 1); reuters/1."""
    models = tmp_path_factory.mktemp("rollout") / "models"
    for name, artifact in artifacts.items():
        shutil.copytree(artifact, models / name / "1")
    derive_version(artifacts["boston"], models / "boston" / "2", "2", add_a_thousand_dollars)
    derive_version(artifacts["boston"], models / "boston" / "3", "3", unchanged)
    derive_version(artifacts["imdb"], models / "imdb" / "2", "2", unchanged)
    for name in artifacts:
        (models / name / ROLLOUT_FILE).write_text('{"stable": "1"}\n')
    return models


@pytest.fixture(scope="module")
def server(tmp_path_factory, rollout_models: Path) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("rollout-log") / "server.log"
    env = {"WORKERS": "2", "MODELS_DIR": str(rollout_models), "ADMIN_TOKEN": TOKEN,
           "ACCESS_LOG": "false"}  # fmt: skip
    with running_server(log, env=env) as running:
        yield running


def roll(server: Server, models: Path, name: str, content: dict[str, object] | str) -> dict:
    """Write ``rollout.json`` and reload every worker; the reload's answer."""
    text = content if isinstance(content, str) else json.dumps(content)
    (models / name / ROLLOUT_FILE).write_text(text)
    response = httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def boston(client: httpx.Client | None, server: Server, key: str | None = None,
           **body: object) -> httpx.Response:  # fmt: skip
    headers = {"X-Routing-Key": key} if key is not None else {}
    payload = body if "instances" in body else {"features": SAMPLE_FEATURES, **body}
    if client is None:  # a fresh connection: either worker may answer
        return httpx.post(
            server.url + "/boston/predict", json=payload, headers={**headers, **FRESH}
        )
    return client.post("/boston/predict", json=payload, headers=headers)


def answered_version(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


def test_a_canary_gets_its_share_of_requests_that_name_no_version(server, rollout_models):
    report = roll(
        server, rollout_models, "boston", {"stable": "1", "canary": "2", "canary_percent": 20}
    )
    assert "boston/rollout.json" not in report["failed"]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = Counter(answered_version(boston(client, server)) for _ in range(2_000))
    assert set(answers) == {"1", "2"}
    assert within_binomial(answers["2"], 2_000, 0.20), answers


def test_one_routing_key_meets_one_version_in_every_worker(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "1", "canary": "2", "canary_percent": 20})
    keys = [f"customer-{i}" for i in range(60)]
    seen: dict[str, set[str]] = {key: set() for key in keys}
    for _ in range(3):
        for key in keys:
            response = boston(None, server, key)
            seen[key].add(answered_version(response))
    for key in keys:
        expected = "2" if bucket("boston", key) < 20 else "1"
        assert seen[key] == {expected}, (key, seen[key])
    assert {"1", "2"} <= set().union(*seen.values())


def test_the_labels_name_the_rollouts_versions_and_v2_takes_them_too(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "1", "canary": "2", "canary_percent": 20})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert answered_version(boston(client, server, version="stable")) == "1"
        assert answered_version(boston(client, server, version="canary")) == "2"
        assert answered_version(boston(client, server, version=3)) == "3"
        v2 = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13],
                          "data": SAMPLE_FEATURES}]}  # fmt: skip
        canary = client.post("/v2/models/boston/versions/canary/infer", json=v2)
        assert canary.status_code == 200 and canary.json()["model_version"] == "2"
        stable = client.post("/v2/models/boston/versions/stable/infer", json=v2)
        assert stable.status_code == 200 and stable.json()["model_version"] == "1"
        none = client.post("/imdb/predict", json={"text": SAMPLE_REVIEW, "version": "canary"})
        assert none.status_code == 404
        assert none.json() == {"detail": "model 'imdb' has no canary (its rollout: stable 1); "
                                         "name a version or 'stable'"}  # fmt: skip
        wrong = client.post(
            "/boston/predict", json={"features": SAMPLE_FEATURES, "version": "latest"}
        )
        assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "version"]


def test_models_shows_the_rollout_in_force(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "1", "canary": "2", "canary_percent": 10})
    card = httpx.get(server.url + "/models/boston").json()
    assert card["version"] == "1", "the card is stable's"
    assert card["rollout"] == {
        "file": {"stable": "1", "canary": "2", "canary_percent": 10},
        "stable": "1", "canary": "2", "canary_percent": 10, "shadow": None, "problem": None,
    }  # fmt: skip
    assert httpx.get(server.url + "/readyz").json()["serving"]["boston"] == "1"


def shadow_counts(server: Server, model: str) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", headers=FRESH).text
    counts: dict[str, float] = {}
    for match in re.finditer(
        rf'^shadow_predictions_total\{{([^}}]*model="{model}"[^}}]*)\}} (\S+)$', text, re.MULTILINE
    ):
        outcome = re.search(r'outcome="(\w+)"', match.group(1))
        assert outcome is not None
        counts[outcome.group(1)] = counts.get(outcome.group(1), 0) + float(match.group(2))
    return counts


def difference_sum(server: Server, model: str) -> float:
    text = httpx.get(server.url + "/metrics", headers=FRESH).text
    match = re.search(rf'^shadow_absolute_difference_sum\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$',
                      text, re.MULTILINE)  # fmt: skip
    return float(match.group(1)) if match else 0.0


def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_shadow_answers_nothing_but_its_disagreement_is_counted(server, rollout_models):
    before = shadow_counts(server, "boston")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reference = boston(client, server, version=1).json()["predictions"][0]["price"]
        roll(server, rollout_models, "boston", {"stable": "1", "shadow": "2"})
        for _ in range(20):  # fresh connections: both workers shadow
            response = boston(None, server, instances=[SAMPLE_FEATURES, SAMPLE_FEATURES])
            assert answered_version(response) == "1"
            assert [p["price"] for p in response.json()["predictions"]] == [reference, reference]
    eventually(
        lambda: shadow_counts(server, "boston").get("disagree", 0) - before.get("disagree", 0) >= 40
    )
    after = shadow_counts(server, "boston")
    assert after.get("disagree", 0) - before.get("disagree", 0) == 40, (
        "one per item, across both workers"
    )
    assert after.get("agree", 0) == before.get("agree", 0)
    assert after.get("error", 0) == before.get("error", 0)
    assert difference_sum(server, "boston") == pytest.approx(40 * 1.0, rel=1e-4), "$1,000 each"


def test_a_shadow_of_the_same_network_agrees_for_a_classifier(server, rollout_models):
    before = shadow_counts(server, "imdb")
    roll(server, rollout_models, "imdb", {"stable": "1", "shadow": "2"})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(10):
            response = client.post(
                "/imdb/predict", json={"texts": [SAMPLE_REVIEW, "awful, boring"]}
            )
            assert answered_version(response) == "1"
        named = client.post("/imdb/predict", json={"text": SAMPLE_REVIEW, "version": 2})
        assert answered_version(named) == "2", "a version named is answered, never shadowed"
    eventually(lambda: shadow_counts(server, "imdb").get("agree", 0) - before.get("agree", 0) >= 20)
    after = shadow_counts(server, "imdb")
    assert after.get("agree", 0) - before.get("agree", 0) == 20
    assert after.get("disagree", 0) == before.get("disagree", 0)
    roll(server, rollout_models, "imdb", {"stable": "1"})


def v2_boston(rows: list[list[float]]) -> dict:
    """The V2 inference body for Boston's ``features`` tensor."""
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [len(rows), 13],
                        "data": [x for row in rows for x in row]}]}  # fmt: skip


def test_v2_inference_is_shadowed_like_the_json_endpoints(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "1", "shadow": "2"})
    before, differences = shadow_counts(server, "boston"), difference_sum(server, "boston")
    body = v2_boston([SAMPLE_FEATURES] * 3)
    for _ in range(10):
        response = httpx.post(server.url + "/v2/models/boston/infer", json=body, headers=FRESH)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == "1"
    named = httpx.post(server.url + "/v2/models/boston/versions/1/infer", json=body)
    assert named.json()["model_version"] == "1", "a version named in the path is never shadowed"
    eventually(
        lambda: shadow_counts(server, "boston").get("disagree", 0) - before.get("disagree", 0) >= 30
    )
    time.sleep(0.5)
    after = shadow_counts(server, "boston")
    assert after.get("disagree", 0) - before.get("disagree", 0) == 30, "one per row, 10 requests"
    assert after.get("error", 0) == before.get("error", 0)
    assert difference_sum(server, "boston") - differences == pytest.approx(30 * 1.0, rel=1e-4)
    roll(server, rollout_models, "boston", {"stable": "1"})


def test_an_invalid_rollout_fails_the_reload_and_the_previous_one_stays(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "3", "canary": "2", "canary_percent": 50})
    report = roll(
        server, rollout_models, "boston", {"stable": "3", "canary": "9", "canary_percent": 50}
    )
    problem = report["failed"]["boston/rollout.json"]
    path = rollout_models / "boston" / ROLLOUT_FILE
    assert problem == (
        f"{path}: canary names version 9, which is not served (served versions: 1, 2, 3) "
        f"(still applying the rollout in force before: stable 3)"
    )
    assert len(report["workers"]) == 2 and all(
        w["boston"] == "3" for w in report["workers"].values()
    )
    assert httpx.get(server.url + "/readyz").json()["failures"]["boston/rollout.json"] == problem
    rollout = httpx.get(server.url + "/models/boston").json()["rollout"]
    assert rollout["file"] == {"stable": "3", "canary": "2", "canary_percent": 50}
    assert rollout["problem"] == problem
    answers = Counter(answered_version(boston(None, server)) for _ in range(60))
    assert set(answers) == {"2", "3"}, "both workers still split 3 / 2"


def test_a_new_rollout_is_applied_by_every_worker_after_a_reload(server, rollout_models):
    roll(server, rollout_models, "boston", {"stable": "2"})
    assert Counter(answered_version(boston(None, server)) for _ in range(40)) == {"2": 40}
    report = roll(server, rollout_models, "boston", {"stable": "1"})
    assert "boston/rollout.json" not in report["failed"]
    assert Counter(answered_version(boston(None, server)) for _ in range(40)) == {"1": 40}
    assert httpx.get(server.url + "/models/boston").json()["rollout"]["problem"] is None


# ---- start-up and polling, in one process ----


def test_at_first_start_a_broken_rollout_is_reported_and_the_highest_version_serves(models):
    from service.serving.registry import Registry

    (models / "boston" / ROLLOUT_FILE).write_text(
        '{"stable": "1", "canary": "1", "canary_percent": 5}'
    )
    registry = Registry.load(models)
    problem = registry.failures["boston/rollout.json"]
    assert problem.startswith(f"{models / 'boston' / ROLLOUT_FILE} is not a valid rollout: ")
    assert problem.endswith("(serving the highest version, 1, until it is fixed)")
    assert registry.ready, "a broken rollout does not make the model unready"
    assert registry.get("boston").version == "1" and registry.rollout("boston").file is None


def test_the_poller_notices_a_changed_rollout_but_does_not_retry_a_broken_one(models):
    from service.lifecycle.poll import scan_disk, what_changed
    from service.serving.registry import Registry

    path = models / "boston" / ROLLOUT_FILE
    path.write_text('{"stable": "1"}')
    registry = Registry.load(models)
    seen = scan_disk(models).signatures
    assert what_changed(registry, [], scan_disk(models), seen) is None
    path.write_text('{"stable": "1", "shadow": "2"}')  # version 2 is not served: it will fail
    assert what_changed(registry, [], scan_disk(models), seen) == "boston/rollout.json changed"
    registry = Registry.load(models, registry)
    assert "boston/rollout.json" in registry.failures
    assert what_changed(registry, [], scan_disk(models), seen) is None, "read once, not every scan"
    path.unlink()
    assert what_changed(registry, [], scan_disk(models), seen) == "boston/rollout.json changed"
    registry = Registry.load(models, registry)
    assert registry.failures == {} and registry.rollout("boston").file is None
