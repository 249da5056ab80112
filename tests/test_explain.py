"""Explanations: each word's or feature's exact effect, computed in one batched model call."""

from __future__ import annotations

import numpy as np
import pytest

from service.api.book import FEATURE_NAMES, SAMPLE_FEATURES
from service.contract.artifacts import read_word_index
from service.serving.registry import load_model
from service.contract.vectorize import WordIndex, hot_positions

POSITIVE = (
    "An excellent film. The acting is wonderful, the story is moving and the score is superb; "
    "one of the best films I have seen this year, a true masterpiece."
)
NEWSWIRE = (
    "The company said first quarter net profit rose to 12.5 mln dlrs, or 1.10 dlrs per share, "
    "from 9.8 mln dlrs a year earlier; revenues rose to 150 mln dlrs."
)


@pytest.fixture(scope="module")
def served(artifacts):
    """The served models' kinds, loaded in this process as the service loads them."""
    return {name: load_model(artifacts[name], name).kind for name in ("imdb", "reuters", "boston")}


def predict_sequences(kind, sequences):
    return kind.predict(kind.positions(sequences))


def explain(api, path: str, body: dict) -> dict:
    response = api.post(path, json={**body, "explain": True})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def without(sequence: list[int], word_id: int) -> list[int]:
    return [i for i in sequence if i != word_id]


def test_each_word_effect_is_the_difference_of_two_model_calls(api, served, artifacts):
    word_index = WordIndex(read_word_index(artifacts["imdb"]))
    sequence = word_index.encode(POSITIVE)
    ids = {word_index.word(i): i for i in set(sequence) if i > 2}
    prediction = explain(api, "/imdb/predict", {"text": POSITIVE, "explain_top": 100})
    model = served["imdb"]
    full = predict_sequences(model, [sequence])[0, 0]
    for item in prediction["explanation"]["words"]:
        reduced = predict_sequences(model, [without(sequence, ids[item["word"]])])[0, 0]
        assert abs(item["effect"] - (full - reduced)) < 1e-6, item
    assert len(prediction["explanation"]["words"]) == len(ids)


def test_a_clearly_positive_reviews_top_words_are_its_praise(api):
    prediction = explain(api, "/imdb/predict", {"text": POSITIVE, "explain_top": 5})
    top_positive = {w["word"] for w in prediction["explanation"]["words"] if w["effect"] > 0}
    assert prediction["label"] == "positive"
    assert top_positive & {"excellent", "wonderful", "superb", "masterpiece", "best"}


def test_words_are_listed_by_absolute_effect_up_to_explain_top(api):
    words = explain(api, "/imdb/predict", {"text": POSITIVE, "explain_top": 7})["explanation"]["words"]
    assert len(words) == 7
    sizes = [abs(w["effect"]) for w in words]
    assert sizes == sorted(sizes, reverse=True)


def test_unknown_and_out_of_vocabulary_words_are_counted(api):
    prediction = explain(api, "/imdb/predict", {"text": "great film zzqxv qqqzx"})
    assert prediction["explanation"]["unknown_words"] == 2
    assert {w["word"] for w in prediction["explanation"]["words"]} == {"great", "film"}


def test_word_id_sequences_are_explained_with_their_words(api, artifacts):
    word_index = WordIndex(read_word_index(artifacts["imdb"]))
    by_text = explain(api, "/imdb/predict", {"text": POSITIVE})
    by_ids = explain(api, "/imdb/predict", {"sequences": [word_index.encode(POSITIVE)]})
    assert by_ids == by_text


def test_reuters_effects_are_on_the_predicted_topic(api, served, artifacts):
    word_index = WordIndex(read_word_index(artifacts["reuters"]))
    sequence = word_index.encode(NEWSWIRE)
    prediction = explain(api, "/reuters/predict", {"text": NEWSWIRE, "explain_top": 3})
    topic = prediction["class_id"]
    first = prediction["explanation"]["words"][0]
    word_id = next(i for i in set(sequence) if i > 2 and word_index.word(i) == first["word"])
    model = served["reuters"]
    expected = (
        predict_sequences(model, [sequence])[0, topic]
        - predict_sequences(model, [without(sequence, word_id)])[0, topic]
    )
    assert abs(first["effect"] - expected) < 1e-6


def test_each_feature_effect_is_the_price_minus_the_price_at_its_mean(api, served):
    prediction = explain(api, "/boston/predict", {"features": SAMPLE_FEATURES})
    model = served["boston"]
    means = {f["name"]: f["train_mean"] for f in model.card["features"]}
    price = model.predict(np.array([SAMPLE_FEATURES]))[0]
    assert [e["feature"] for e in prediction["explanation"]] != list(FEATURE_NAMES)  # sorted
    assert sorted(e["feature"] for e in prediction["explanation"]) == sorted(FEATURE_NAMES)
    for effect in prediction["explanation"]:
        row = list(SAMPLE_FEATURES)
        row[FEATURE_NAMES.index(effect["feature"])] = means[effect["feature"]]
        at_mean = model.predict(np.array([row]))[0]
        # prices are float32 near 20 ($1000s): agreement within 1e-6 relative, a tenth of a cent
        assert abs(effect["effect"] - (price - at_mean)) <= 1e-6 * abs(price), effect
    sizes = [abs(e["effect"]) for e in prediction["explanation"]]
    assert sizes == sorted(sizes, reverse=True)


def test_no_explanation_unless_asked(api):
    prediction = api.post("/imdb/predict", json={"text": POSITIVE}).json()["predictions"][0]
    assert set(prediction) == {"label", "probability"}


@pytest.mark.parametrize("explain_top", [0, 10_001, "5", True])
def test_explain_top_out_of_range_is_422(api, explain_top):
    response = api.post("/imdb/predict", json={"text": "x", "explain": True, "explain_top": explain_top})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "explain_top"]


def test_the_explanation_is_one_batched_call(served, monkeypatch):
    model = served["imdb"]
    calls = []
    original = type(model).predict
    monkeypatch.setattr(type(model), "predict",
                        lambda self, rows: calls.append(len(rows)) or original(self, rows))  # fmt: skip
    sequence = model.word_index.encode(POSITIVE)
    model.explain(sequence, lambda out: out[:, 0], 10)
    assert calls == [1 + len(set(hot_positions(sequence)) - {1, 2})]
