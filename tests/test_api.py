"""The HTTP contract of the three predict endpoints and the probes, against the real server."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from service.api.book import FEATURE_NAMES, SAMPLE_FEATURES, SAMPLE_NEWSWIRE, SAMPLE_REVIEW

GOOD = "A wonderful, moving film with excellent acting. I loved it and would watch it again."
BAD = "The worst film I have ever seen: boring, stupid and a waste of time. Awful acting."


def post(api: httpx.Client, path: str, body: object) -> httpx.Response:
    return api.post(path, json=body)


def only_issue(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text
    issues = response.json()["detail"]
    assert len(issues) >= 1
    return issues[0]


# --- IMDB ---------------------------------------------------------------------------------


def test_imdb_answers_one_prediction_per_text_in_order(api):
    body = post(api, "/imdb/predict", {"texts": [GOOD, BAD]}).json()
    assert body["model"]["name"] == "imdb"
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative"]
    assert body["predictions"][0]["probability"] > 0.8
    assert body["predictions"][1]["probability"] < 0.2


def test_imdb_label_is_positive_exactly_when_probability_is_at_least_half(api):
    texts = [GOOD, BAD, "ok", "not bad, not good", SAMPLE_REVIEW, "meh <br /> fine"]
    for prediction in post(api, "/imdb/predict", {"texts": texts}).json()["predictions"]:
        assert (prediction["label"] == "positive") == (prediction["probability"] >= 0.5)
        assert 0.0 <= prediction["probability"] <= 1.0


def test_imdb_text_alone_equals_the_same_text_inside_a_batch(api):
    alone = post(api, "/imdb/predict", {"text": GOOD}).json()["predictions"][0]
    batch = post(api, "/imdb/predict", {"texts": [BAD, GOOD, "x" * 500]}).json()
    assert batch["predictions"][1] == alone


def test_imdb_word_id_sequence_equals_its_raw_text(api, artifacts):
    from service.contract.artifacts import read_word_index
    from service.contract.vectorize import WordIndex

    sequence = WordIndex(read_word_index(artifacts["imdb"])).encode(GOOD)
    by_text = post(api, "/imdb/predict", {"text": GOOD}).json()["predictions"][0]
    by_ids = post(api, "/imdb/predict", {"sequences": [sequence]}).json()["predictions"][0]
    assert by_ids == by_text


def test_imdb_word_ids_past_num_words_count_as_out_of_vocabulary(api):
    past_cut = post(api, "/imdb/predict", {"sequences": [[1, 14, 20_000, 30_000]]}).json()
    as_oov = post(api, "/imdb/predict", {"sequences": [[1, 14, 2]]}).json()
    assert past_cut["predictions"] == as_oov["predictions"]


@pytest.mark.parametrize(
    "text", ["Ünïcödé ✓ 映画は素晴らしい", "🎬🍿👍", "tab\tand\x00nul\x1bescape\r\n", "!!!???...", "<br /><br />"]
)
def test_any_unicode_text_is_valid_input(api, text):
    response = post(api, "/imdb/predict", {"text": text})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


# --- Reuters ------------------------------------------------------------------------------


def test_reuters_gives_46_probabilities_summing_to_one(api):
    prediction = post(api, "/reuters/predict", {"text": SAMPLE_NEWSWIRE}).json()["predictions"][0]
    assert len(prediction["probabilities"]) == 46
    assert math.isclose(sum(prediction["probabilities"]), 1.0, abs_tol=1e-5)


def test_reuters_topic_is_the_most_probable_class_with_its_name(api, artifacts):
    labels = json.loads((artifacts["reuters"] / "metadata.json").read_text())["labels"]
    prediction = post(api, "/reuters/predict", {"text": SAMPLE_NEWSWIRE}).json()["predictions"][0]
    probabilities = prediction["probabilities"]
    assert prediction["class_id"] == probabilities.index(max(probabilities))
    assert prediction["label"] == labels[prediction["class_id"]]
    assert prediction["label"] == "earn"


def test_reuters_top_k_lists_that_many_topics_best_first(api):
    body = {"texts": [SAMPLE_NEWSWIRE, "oil prices crude opec"], "top_k": 5}
    for prediction in post(api, "/reuters/predict", body).json()["predictions"]:
        top = prediction["top"]
        assert len(top) == 5
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
        assert top[0]["class_id"] == prediction["class_id"]
        assert all(t["probability"] == prediction["probabilities"][t["class_id"]] for t in top)


def test_reuters_top_k_defaults_to_three(api):
    prediction = post(api, "/reuters/predict", {"text": SAMPLE_NEWSWIRE}).json()["predictions"][0]
    assert len(prediction["top"]) == 3


@pytest.mark.parametrize("top_k", [0, 47, -1, 2.5, "3", True])
def test_reuters_top_k_outside_1_to_46_is_rejected(api, top_k):
    issue = only_issue(post(api, "/reuters/predict", {"text": "x", "top_k": top_k}))
    assert issue["loc"] == ["body", "top_k"]


# --- Boston -------------------------------------------------------------------------------


def test_boston_features_instances_and_records_give_the_same_price(api):
    record = dict(zip(FEATURE_NAMES, SAMPLE_FEATURES))
    one = post(api, "/boston/predict", {"features": SAMPLE_FEATURES}).json()["predictions"]
    rows = post(api, "/boston/predict", {"instances": [SAMPLE_FEATURES]}).json()["predictions"]
    named = post(api, "/boston/predict", {"records": [record]}).json()["predictions"]
    assert one == rows == named
    assert 5.0 <= one[0]["price"] <= 50.0


def test_boston_price_usd_is_the_price_in_dollars(api):
    prediction = post(api, "/boston/predict", {"features": SAMPLE_FEATURES}).json()["predictions"][0]
    assert prediction["price_usd"] == round(prediction["price"] * 1000, 2)


def test_boston_names_the_features_outside_the_training_range(api):
    inside = post(api, "/boston/predict", {"features": SAMPLE_FEATURES}).json()["predictions"][0]
    outside_row = list(SAMPLE_FEATURES)
    outside_row[FEATURE_NAMES.index("RM")] = 25.0
    outside_row[FEATURE_NAMES.index("CRIM")] = -1.0
    outside = post(api, "/boston/predict", {"features": outside_row}).json()["predictions"][0]
    assert inside["out_of_range"] == []
    assert outside["out_of_range"] == ["CRIM", "RM"]


def test_boston_accepts_integers_and_negative_zero(api):
    row = [int(v) if float(v).is_integer() else v for v in SAMPLE_FEATURES]
    row[1] = -0.0
    response = post(api, "/boston/predict", {"features": row})
    assert response.status_code == 200, response.text


# --- bad input: 422 naming the field ------------------------------------------------------


def test_malformed_json_is_422_saying_so(api):
    response = api.post(
        "/imdb/predict", content=b'{"text": "x"', headers={"content-type": "application/json"}
    )
    issue = only_issue(response)
    assert issue["type"] == "json_invalid"
    assert "JSON decode error" in issue["msg"]


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"texts": "not a list"}, ["body", "texts"]),
        ({"text": 42}, ["body", "text"]),
        ({"text": ""}, ["body", "text"]),
        ({"texts": []}, ["body", "texts"]),
        ({"texts": ["fine", ""]}, ["body", "texts", 1]),
        ({"sequences": [[1, -4]]}, ["body", "sequences", 0, 1]),
        ({"sequences": [[1, 2.5]]}, ["body", "sequences", 0, 1]),
        ({"sequences": [[1, True]]}, ["body", "sequences", 0, 1]),
        ({"sequences": [[1, "14"]]}, ["body", "sequences", 0, 1]),
        ({"sequences": [[1, 2**31]]}, ["body", "sequences", 0, 1]),
        ({"txt": "typo"}, ["body", "txt"]),
    ],
)
def test_wrong_text_input_is_422_at_the_field(api, body, loc):
    assert only_issue(post(api, "/imdb/predict", body))["loc"] == loc


def test_no_input_form_is_422_listing_the_forms(api):
    issue = only_issue(post(api, "/imdb/predict", {}))
    assert "exactly one of 'text', 'texts', 'sequences'" in issue["msg"]


def test_two_input_forms_are_422(api):
    issue = only_issue(post(api, "/reuters/predict", {"text": "a", "texts": ["b"]}))
    assert "found 'text', 'texts'" in issue["msg"]


def test_a_json_array_instead_of_an_object_is_422(api):
    assert only_issue(post(api, "/imdb/predict", ["text"]))["loc"] == ["body"]


def test_more_texts_than_the_batch_limit_is_422(api):
    issue = only_issue(post(api, "/imdb/predict", {"texts": ["ok"] * 1001}))
    assert issue["loc"] == ["body", "texts"]
    assert "at most 1000" in issue["msg"]


def test_a_text_over_the_length_limit_is_422(api):
    issue = only_issue(post(api, "/reuters/predict", {"text": "a" * 100_001}))
    assert issue["loc"] == ["body", "text"]
    assert "at most 100000 characters" in issue["msg"]


def test_word_ids_past_the_vocabulary_count_as_out_of_vocabulary(api):
    huge = post(api, "/imdb/predict", {"sequences": [[1, 14, 10**9]]}).json()["predictions"]
    oov = post(api, "/imdb/predict", {"sequences": [[1, 14, 2]]}).json()["predictions"]
    assert huge == oov


def test_integral_word_ids_written_as_floats_are_accepted(api):
    as_floats = post(api, "/imdb/predict", {"sequences": [[1.0, 14.0, 22.0]]}).json()
    as_ints = post(api, "/imdb/predict", {"sequences": [[1, 14, 22]]}).json()
    assert as_floats == as_ints


@pytest.mark.parametrize(
    "features, loc",
    [
        (SAMPLE_FEATURES[:12], ["body", "features"]),
        (SAMPLE_FEATURES + [1.0], ["body", "features"]),
        (SAMPLE_FEATURES[:12] + ["1.0"], ["body", "features", 12]),
        (SAMPLE_FEATURES[:12] + [True], ["body", "features", 12]),
        (SAMPLE_FEATURES[:12] + [None], ["body", "features", 12]),
    ],
)
def test_wrong_features_are_422_at_the_field(api, features, loc):
    assert only_issue(post(api, "/boston/predict", {"features": features}))["loc"] == loc


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_features_are_422(api, literal):
    row = b",".join(str(v).encode() for v in SAMPLE_FEATURES[:12])
    response = api.post(
        "/boston/predict",
        content=b'{"features": [' + row + b"," + literal + b"]}",
        headers={"content-type": "application/json"},
    )
    issue = only_issue(response)
    assert issue["loc"] == ["body", "features", 12]
    assert "finite" in issue["msg"]


def test_a_record_missing_a_feature_is_422_naming_it(api):
    record = dict(zip(FEATURE_NAMES, SAMPLE_FEATURES))
    del record["LSTAT"]
    issue = only_issue(post(api, "/boston/predict", {"records": [record]}))
    assert issue["loc"] == ["body", "records", 0, "LSTAT"]
    assert issue["type"] == "missing"


def test_a_record_with_an_unknown_feature_is_422_naming_it(api):
    record = {**dict(zip(FEATURE_NAMES, SAMPLE_FEATURES)), "MEDV": 20.0}
    issue = only_issue(post(api, "/boston/predict", {"records": [record]}))
    assert issue["loc"] == ["body", "records", 0, "MEDV"]


def test_a_body_over_the_size_limit_is_413(api):
    response = api.post(
        "/imdb/predict",
        content=b'{"text": "' + b"a" * 10_000_001 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


def test_a_non_json_content_type_is_415(api):
    response = api.post("/imdb/predict", content=b'{"text": "x"}', headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_invalid_utf8_is_a_4xx(api):
    response = api.post(
        "/imdb/predict", content=b'{"text": "\xff\xfe bad"}', headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)


def test_error_bodies_do_not_echo_the_input(api):
    secret = "s3cr3t-" * 2000
    response = post(api, "/imdb/predict", {"text": secret, "extra": secret})
    assert response.status_code == 422
    assert "s3cr3t" not in response.text


def test_an_unknown_path_is_404(api):
    assert api.post("/mnist/predict", json={"text": "x"}).status_code == 404


# --- probes, model cards, metrics, docs ---------------------------------------------------


def test_healthz_says_alive(api):
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_200_with_every_model_ready(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "models": {"imdb": "ready", "reuters": "ready", "boston": "ready"},
        "serving": {"imdb": "1", "reuters": "1", "boston": "1"},
        "failures": {},
    }


def test_models_lists_the_three_with_their_headline_metric(api, artifacts):
    models = {m["name"]: m for m in api.get("/models").json()["models"]}
    assert set(models) == {"imdb", "reuters", "boston"}
    card = json.loads((artifacts["boston"] / "metadata.json").read_text())
    assert models["boston"]["metric"] == {"test_mae": card["metrics"]["test_mae"]}
    assert models["reuters"]["inputs"] == ["text", "texts", "sequences"]
    assert all(m["ready"] for m in models.values())


def test_model_card_is_the_artifact_metadata_plus_the_served_versions(api, artifacts):
    for name in ("imdb", "reuters", "boston"):
        card = api.get(f"/models/{name}").json()
        on_disk = json.loads((artifacts[name] / "metadata.json").read_text())
        versions = card.pop("versions")
        assert card.pop("rollout")["stable"] == "1"  # models/NAME/rollout.json (test_rollout.py)
        assert card == on_disk
        cards = [json.loads(f.read_text()) for f in sorted(artifacts[name].parent.glob("*/metadata.json"))]
        assert versions == [
            {"version": c["version"], "created": c["created"], "metrics": c["metrics"]} for c in cards
        ]
    assert len(api.get("/models/reuters").json()["labels"]) == 46


def test_a_version_card_is_that_version_artifact_metadata(api, artifacts):
    card = api.get("/models/imdb/versions/1").json()
    assert card == json.loads((artifacts["imdb"] / "metadata.json").read_text())


def test_an_unknown_model_card_is_404(api):
    assert api.get("/models/mnist").status_code == 404


def test_metrics_count_requests_and_predictions(api):
    post(api, "/boston/predict", {"instances": [SAMPLE_FEATURES] * 3})
    text = api.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/boston/predict",status="200"}' in text
    assert 'predictions_total{model="boston",version="1"}' in text
    assert 'prediction_batch_size_bucket{le="4.0",model="boston"}' in text
    assert 'model_ready{model="imdb"} 1.0' in text


def test_request_id_is_echoed_when_given_and_made_when_not(api):
    given = api.get("/healthz", headers={"x-request-id": "trace-123"})
    made = api.get("/healthz")
    assert given.headers["x-request-id"] == "trace-123"
    assert len(made.headers["x-request-id"]) == 32


def test_each_request_logs_one_structured_line(api, server):
    api.get("/healthz", headers={"x-request-id": "log-line-check"})
    # The line is written once the answer has gone out: give the server a moment to write it.
    for _ in range(40):
        lines = [json.loads(line) for line in server.log().splitlines() if "log-line-check" in line]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1
    assert {"method": "GET", "path": "/healthz", "status": 200}.items() <= lines[0].items()
    assert lines[0]["latency_ms"] >= 0


def test_openapi_has_an_example_for_every_predict_endpoint(api):
    spec = api.get("/openapi.json").json()
    for path in ("/imdb/predict", "/reuters/predict", "/boston/predict"):
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        schema = spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
        assert schema["examples"], path
        for example in schema["examples"]:
            assert post(api, path, example).status_code == 200
    assert api.get("/docs").status_code == 200


def test_responses_carry_no_server_header(api):
    assert "server" not in api.get("/healthz").headers
