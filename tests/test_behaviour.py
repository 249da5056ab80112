"""Behavioural tests in the style of Made With ML, through the real server: directional (a change
that should move the answer one way does), invariance (a change that should not, does not) and
minimum functionality (an obvious case gets the obvious answer)."""

from __future__ import annotations

import pytest

from service.api.book import FEATURE_NAMES, SAMPLE_FEATURES

GLOWING = "A wonderful, moving film with superb acting: one of the best of the year, a masterpiece."
SCATHING = "A dull, boring mess with awful acting: the worst film of the year, a waste of time."
EARNINGS = "Shr 1.10 dlrs vs 90 cts. Net 12.5 mln dlrs vs 9.8 mln. Revs 150 mln dlrs vs 120 mln."


def sentiment(api, texts: list[str]) -> list[float]:
    response = api.post("/imdb/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    return [p["probability"] for p in response.json()["predictions"]]


def price(api, **changes: float) -> float:
    row = dict(zip(FEATURE_NAMES, SAMPLE_FEATURES)) | changes
    response = api.post("/boston/predict", json={"records": [row]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["price"]


def test_directional_a_glowing_review_scores_above_a_scathing_one(api):
    glowing, scathing = sentiment(api, [GLOWING, SCATHING])
    assert glowing > 0.5 > scathing


def test_directional_adding_praise_raises_the_probability_of_positive(api):
    plain, praised = sentiment(api, ["The film was long.", "The film was long. It was excellent and moving."])
    assert praised > plain


@pytest.mark.parametrize("rooms", [(6.142, 7.5), (7.0, 8.0)])
def test_directional_more_rooms_give_a_higher_price(api, rooms):
    fewer, more = rooms
    assert price(api, RM=more) > price(api, RM=fewer)


def test_directional_a_larger_lower_status_share_gives_a_lower_price(api):
    assert price(api, LSTAT=25.0) < price(api, LSTAT=5.0)


@pytest.mark.parametrize("change", [str.upper, str.lower, str.title])
def test_invariance_letter_case_does_not_change_the_sentiment(api, change):
    assert sentiment(api, [change(GLOWING)]) == sentiment(api, [GLOWING])


def test_invariance_punctuation_and_spacing_do_not_change_the_sentiment(api):
    reworded = GLOWING.replace(",", " ,").replace(":", "!!!").replace(".", "...")
    assert sentiment(api, [reworded]) == sentiment(api, [GLOWING])


def test_minimum_functionality_an_earnings_report_is_earn(api):
    response = api.post("/reuters/predict", json={"text": EARNINGS})
    assert response.json()["predictions"][0]["label"] == "earn"
