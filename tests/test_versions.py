"""Model versions: ``models/<name>/<version>/`` folders, the highest served by default, any one
by our ``version`` field or the V2 path; the flat layout of before still reads as version 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from service.api.book import SAMPLE_FEATURES, SAMPLE_REVIEW
from tests.derived import add_a_thousand_dollars, derive_version, flip_sentiment
from tests.serverproc import running_server


@pytest.fixture(scope="module")
def versioned(tmp_path_factory, artifacts):
    """A server over: boston in the flat layout (version 1) plus boston/2 (+$1,000) and a
    boston/3 whose card claims another version; imdb/1 and imdb/2 (sentiment flipped); reuters/1."""
    models = tmp_path_factory.mktemp("versioned") / "models"
    shutil.copytree(artifacts["boston"], models / "boston")  # flat: files right in boston/
    shutil.copytree(artifacts["imdb"], models / "imdb" / "1")
    shutil.copytree(artifacts["reuters"], models / "reuters" / "1")
    derive_version(artifacts["boston"], models / "boston" / "2", "2", add_a_thousand_dollars)
    derive_version(artifacts["boston"], models / "boston" / "3", "7", add_a_thousand_dollars)
    derive_version(artifacts["imdb"], models / "imdb" / "2", "2", flip_sentiment)
    log = tmp_path_factory.mktemp("versioned-log") / "server.log"
    with running_server(log, env={"MODELS_DIR": str(models)}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client


def price(client: httpx.Client, path: str = "/boston/predict", **extra: object) -> tuple[str, float]:
    response = client.post(path, json={"features": SAMPLE_FEATURES, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model"]["version"], body["predictions"][0]["price"]


def test_the_highest_version_serves_by_default(versioned, api):
    version, default_price = price(versioned)
    _, committed_price = price(api)
    assert version == "2"
    assert default_price == pytest.approx(committed_price + 1.0, abs=1e-4)


def test_the_version_field_picks_an_older_version(versioned, api):
    assert price(versioned, version=1) == price(api)
    assert price(versioned, version="1") == price(api)


def test_a_flat_model_folder_is_version_1(versioned):
    cards = versioned.get("/models/boston").json()["versions"]
    assert [card["version"] for card in cards] == ["1", "2"]


def test_text_models_take_the_version_field_too(versioned, api):
    flipped = versioned.post("/imdb/predict", json={"text": SAMPLE_REVIEW}).json()
    first = versioned.post("/imdb/predict", json={"text": SAMPLE_REVIEW, "version": 1}).json()
    committed = api.post("/imdb/predict", json={"text": SAMPLE_REVIEW}).json()
    assert flipped["model"]["version"] == "2" and first["model"]["version"] == "1"
    assert first["predictions"] == committed["predictions"]
    p = committed["predictions"][0]["probability"]
    assert flipped["predictions"][0]["probability"] == pytest.approx(1 - p, abs=1e-6)
    assert flipped["predictions"][0]["label"] != committed["predictions"][0]["label"]


def test_v2_paths_pick_a_version_and_default_to_the_highest(versioned, api):
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 13], "data": SAMPLE_FEATURES}]}
    default = versioned.post("/v2/models/boston/infer", json=body).json()
    first = versioned.post("/v2/models/boston/versions/1/infer", json=body).json()
    assert default["model_version"] == "2" and first["model_version"] == "1"
    assert first["outputs"][0]["data"] == [price(api)[1]]
    assert versioned.get("/v2/models/boston").json()["versions"] == ["1", "2"]


def test_a_version_not_served_is_404_naming_the_served_ones(versioned):
    response = versioned.post("/boston/predict", json={"features": SAMPLE_FEATURES, "version": 9})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "version '9' of model 'boston' is not served (there is no such version); "
        "served versions: 1, 2"
    )


def test_a_version_whose_card_disagrees_with_its_folder_is_refused_and_reported(versioned):
    ready = versioned.get("/readyz")
    assert ready.status_code == 200, "a failed extra version leaves the model serving"
    assert "is version 3 by its place but its metadata.json says '7'" in ready.json()["failures"]["boston/3"]
    response = versioned.post("/boston/predict", json={"features": SAMPLE_FEATURES, "version": 3})
    assert response.status_code == 503
    assert "failed to load" in response.json()["detail"]


@pytest.mark.parametrize("version", ["abc", 0, "01", -1, True, 1.5])
def test_a_malformed_version_is_422(versioned, version):
    response = versioned.post("/boston/predict", json={"features": SAMPLE_FEATURES, "version": version})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "version"]


def test_models_lists_every_served_version_with_the_default_first_class(versioned):
    models = {m["name"]: m for m in versioned.get("/models").json()["models"]}
    assert models["boston"]["version"] == "2"
    assert models["boston"]["versions"] == ["1", "2"]
    assert "boston/3" not in models["boston"]["versions"]
    assert "is version 3 by its place" in models["boston"]["error"]
    assert models["reuters"]["versions"] == ["1"]


def test_each_version_card_carries_its_own_metrics(versioned, artifacts):
    card = versioned.get("/models/boston").json()
    assert card["version"] == "2"
    assert [v["metrics"]["test_mae"] for v in card["versions"]] == [card["metrics"]["test_mae"]] * 2
    assert versioned.get("/models/boston/versions/1").json()["version"] == "1"


def test_training_writes_the_next_version_folder(tmp_path: Path, artifacts):
    from training.export import next_version

    model_folder = tmp_path / "boston"
    assert next_version(model_folder) == "1"
    shutil.copytree(artifacts["boston"], model_folder)  # flat: version 1
    assert next_version(model_folder) == "2"
    shutil.copytree(artifacts["boston"], model_folder / "5")
    assert next_version(model_folder) == "6"
