"""Model kinds (``service.kinds``): each model's request, limits and answers come from its card."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service.api.book import SAMPLE_FEATURES, SAMPLE_REVIEW
from service.kinds import kind_of
from service.kinds.base import InputProblems, Limits
from service.kinds.table import prediction_model
from service.kinds.table import request_model as table_request
from service.kinds.text import request_model as text_request
from service.serving.registry import load_model

LIMITS = Limits(max_batch_size=3, max_text_chars=20)


@pytest.fixture(scope="module")
def kinds(artifacts):
    """The committed models' kinds, loaded as the service loads them."""
    return {name: load_model(artifacts[name], name).kind for name in ("imdb", "reuters", "boston")}


def test_a_card_declares_its_kind(kinds):
    assert {name: kind.kind for name, kind in kinds.items()} == {
        "imdb": "text-classifier", "reuters": "text-classifier", "boston": "table-regressor",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("card", "kind"),
    [
        ({"preprocessing": {"num_words": 10_000}}, "text-classifier"),
        ({"features": [{"name": "x"}]}, "table-regressor"),
        ({"kind": "image-classifier"}, "image-classifier"),
        ({}, None),
    ],
)
def test_a_card_from_before_kinds_is_read_by_what_it_holds(card, kind):
    assert kind_of(card) == kind


def test_top_k_is_bounded_by_the_number_of_labels():
    model = text_request("topics", ["a", "b", "c", "d"], 500, "example")
    assert model.model_validate({"text": "x", "top_k": 4}).top_k == 4
    with pytest.raises(ValidationError, match="less than or equal to 4"):
        model.model_validate({"text": "x", "top_k": 5})


def test_a_binary_text_model_takes_no_top_k():
    model = text_request("spam", ["ham", "spam"], 500, "example")
    with pytest.raises(ValidationError, match="top_k"):
        model.model_validate({"text": "x", "top_k": 1})


FEATURES = [
    {"name": "bill length (mm)", "description": "bill length", "unit": "mm",
     "train_min": 30.0, "train_max": 60.0, "train_mean": 44.0},
    {"name": "flipper", "train_min": 170.0, "train_max": 230.0, "train_mean": 200.0},
]  # fmt: skip


def test_records_are_read_by_feature_name_in_card_order_whatever_the_name():
    model = table_request("penguins", FEATURES)
    body = model.model_validate({"records": [{"flipper": 190, "bill length (mm)": 40.5}]})
    assert body.rows() == [[40.5, 190.0]]


def test_a_record_with_an_unknown_or_missing_feature_is_refused():
    model = table_request("penguins", FEATURES)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({"records": [{"flipper": 1, "bill length (mm)": 2, "mass": 3}]})
    with pytest.raises(ValidationError, match="Field required"):
        model.model_validate({"records": [{"flipper": 1}]})


def test_a_row_must_have_one_number_per_feature():
    with pytest.raises(ValidationError, match="at least 2 items"):
        table_request("penguins", FEATURES).model_validate({"features": [1.0]})


def test_the_answer_field_and_its_derived_fields_come_from_the_card():
    boston = prediction_model("boston", {"field": "price", "derived": [{"field": "price_usd", "scale": 1000}]})
    assert list(boston.model_fields) == ["price", "price_usd", "out_of_range", "explanation"]
    assert list(prediction_model("penguins", {"field": "value"}).model_fields)[0] == "value"


def test_a_binary_label_is_the_second_one_from_a_probability_of_one_half(kinds):
    answers = kinds["imdb"].postprocess(np.array([[0.5], [0.4999999]], np.float32))
    assert [a.label for a in answers] == ["positive", "negative"]


def test_a_multiclass_answer_lists_the_top_k_best_first(kinds):
    scores = np.zeros((1, 46), np.float32)
    scores[0, [3, 4, 19]] = [0.5, 0.3, 0.2]
    answer = kinds["reuters"].postprocess(scores, top_k=2)[0]
    assert (answer.label, answer.class_id) == ("earn", 3)
    assert [t.label for t in answer.top] == ["earn", "acq"]


def test_limits_name_each_field_and_item_over_them(kinds):
    text = kinds["imdb"]
    body = text.request_model.model_validate({"texts": ["short", "x" * 21, "fine", "y" * 30]})
    with pytest.raises(InputProblems) as raised:
        text.check(body, LIMITS)
    assert [(p.loc, p.msg) for p in raised.value.problems] == [
        (("texts",), "at most 3 items allowed, got 4"),
    ]
    body = text.request_model.model_validate({"texts": ["short", "x" * 21]})
    with pytest.raises(InputProblems) as raised:
        text.check(body, LIMITS)
    assert [(p.loc, p.msg) for p in raised.value.problems] == [
        (("texts", 1), "at most 20 characters allowed, got 21"),
    ]


def test_a_table_batch_over_the_limit_is_refused(kinds):
    table = kinds["boston"]
    body = table.request_model.model_validate({"instances": [SAMPLE_FEATURES] * 4})
    with pytest.raises(InputProblems, match="at most 3 items allowed, got 4"):
        table.check(body, LIMITS)


def test_a_text_and_its_word_ids_get_the_same_answer(kinds):
    text = kinds["imdb"]
    by_text = text.answer(text.request_model.model_validate({"text": SAMPLE_REVIEW}))
    ids = text.word_index.encode(SAMPLE_REVIEW)
    by_ids = text.answer(text.request_model.model_validate({"sequences": [ids]}))
    assert by_text == by_ids


def test_out_of_range_names_the_features_outside_training(kinds):
    table = kinds["boston"]
    row = list(SAMPLE_FEATURES)
    row[5] = 100.0  # RM: a hundred rooms
    answer = table.answer(table.request_model.model_validate({"features": row}))[0]
    assert answer.out_of_range == ["RM"]
    assert answer.price_usd == round(answer.price * 1000, 2)
