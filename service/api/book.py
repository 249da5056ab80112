"""The book endpoints' contract: ``/imdb/predict``, ``/reuters/predict``, ``/boston/predict``.

These three paths were the service's first API and keep it byte for byte: the typed request
bodies (with their examples in /docs), and the typed answers /docs shows. This is the one module
that names the book models; what answers them is the generic path (``service.api.rest``) and
each model's kind, exactly as for any other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from service.kinds.base import (
    VERSION_FIELD,
    ModelRef,
    Version,
    exactly_one_of,
    integral_float_to_int,
)
from service.kinds.table import FeatureEffect, FiniteNumber, TableRequest
from service.kinds.text import TextExplanation, TextRequest

FEATURE_NAMES = (
    "CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT",
)  # fmt: skip
"""The 13 Boston housing features, in the order the model reads them."""

SAMPLE_REVIEW = (
    "This film was just brilliant: the casting, the story and the direction were wonderful, "
    "and the actors gave excellent performances. I loved every minute of it."
)
SAMPLE_NEWSWIRE = (
    "Shares of the company rose after it said first quarter net profit rose to 12.5 mln dlrs, "
    "or 1.10 dlrs per share, from 9.8 mln dlrs a year earlier, on revenues of 150 mln dlrs."
)
SAMPLE_FEATURES = [
    1.23247, 0.0, 8.14, 0.0, 0.538, 6.142, 91.7, 3.9769, 4.0, 307.0, 21.0, 396.9, 18.72,
]  # fmt: skip


@dataclass(frozen=True)
class BookModel:
    """What a book endpoint needs of the model folder of its name: the kind, the output width
    and (for a table) the features, in order. Another model in that folder is answered 503."""

    kind: str
    outputs: int
    features: tuple[str, ...] = ()


BOOK_MODELS = {
    "imdb": BookModel("text-classifier", 1),
    "reuters": BookModel("text-classifier", 46),
    "boston": BookModel("table-regressor", 1, FEATURE_NAMES),
}
"""The book endpoints' models, in the order the service has always listed them."""


class ImdbRequest(TextRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=exactly_one_of(
            TextRequest.input_forms,
            [
                {"text": SAMPLE_REVIEW},
                {"texts": [SAMPLE_REVIEW, "Dull."]},
                {"text": SAMPLE_REVIEW, "explain": True, "explain_top": 5},
            ],
        ),
    )


class ReutersRequest(TextRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=exactly_one_of(
            TextRequest.input_forms,
            [{"text": SAMPLE_NEWSWIRE, "top_k": 3}, {"text": SAMPLE_NEWSWIRE, "explain": True}],
        ),
    )

    top_k: Annotated[StrictInt, Field(ge=1, le=46), BeforeValidator(integral_float_to_int)] = Field(
        3, description="How many best topics to list under 'top'."
    )


class HousingRecord(BaseModel):
    """The 13 raw features of one district, by name (all required, no others)."""

    model_config = ConfigDict(extra="forbid")

    CRIM: FiniteNumber = Field(description="per-capita crime rate by town")
    ZN: FiniteNumber = Field(description="share of residential land zoned for lots over 25,000 sq ft (%)")
    INDUS: FiniteNumber = Field(description="share of non-retail business acres per town (%)")
    CHAS: FiniteNumber = Field(description="1 if the tract bounds the Charles River, else 0")
    NOX: FiniteNumber = Field(description="nitric oxides concentration (parts per 10 million)")
    RM: FiniteNumber = Field(description="average number of rooms per dwelling")
    AGE: FiniteNumber = Field(description="share of owner-occupied units built before 1940 (%)")
    DIS: FiniteNumber = Field(description="weighted distance to five Boston employment centres")
    RAD: FiniteNumber = Field(description="index of accessibility to radial highways")
    TAX: FiniteNumber = Field(description="full-value property-tax rate per $10,000")
    PTRATIO: FiniteNumber = Field(description="pupil-teacher ratio by town")
    B: FiniteNumber = Field(description="1000 (Bk - 0.63)^2, Bk the share of Black residents")
    LSTAT: FiniteNumber = Field(description="share of lower-status population (%)")

    def row(self) -> list[float]:
        return [getattr(self, name) for name in FEATURE_NAMES]


Row = Annotated[list[FiniteNumber], Field(min_length=13, max_length=13)]


class BostonRequest(TableRequest):
    """One row of 13 raw features, a batch of rows, or a batch of named records."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=exactly_one_of(
            ("features", "instances", "records"),
            [
                {"features": SAMPLE_FEATURES},
                {"records": [dict(zip(FEATURE_NAMES, SAMPLE_FEATURES))]},
                {"features": SAMPLE_FEATURES, "explain": True},
            ],
        ),
    )
    input_forms = ("features", "instances", "records")

    features: Row = Field(  # type: ignore[assignment]
        None, description=f"13 raw numbers in the order {', '.join(FEATURE_NAMES)}."
    )
    instances: list[Row] = Field(None, min_length=1, description="Rows of 13 raw numbers.")  # type: ignore[assignment]
    records: list[HousingRecord] = Field(None, min_length=1, description="Named rows.")  # type: ignore[assignment]
    version: Version = VERSION_FIELD  # type: ignore[assignment]
    explain: StrictBool = Field(
        False, description="Add each feature's effect: the price minus the price at its mean."
    )


class SentimentPrediction(BaseModel):
    label: Literal["negative", "positive"] = Field(description="'positive' when probability ≥ 0.5.")
    probability: float = Field(ge=0, le=1, description="Probability that the review is positive.")
    explanation: TextExplanation | None = Field(
        None, description="With explain: effects on the probability of positive."
    )


class ImdbResponse(BaseModel):
    model: ModelRef
    predictions: list[SentimentPrediction]


class TopicScore(BaseModel):
    class_id: int = Field(ge=0, le=45)
    label: str
    probability: float = Field(ge=0, le=1)


class TopicPrediction(BaseModel):
    label: str = Field(description="Name of the most probable topic (earn, acq, ...).")
    class_id: int = Field(ge=0, le=45)
    probabilities: list[float] = Field(description="46 probabilities in class-id order, sum 1.")
    top: list[TopicScore] = Field(description="The top_k topics, most probable first.")
    explanation: TextExplanation | None = Field(
        None, description="With explain: effects on the probability of the predicted topic."
    )


class ReutersResponse(BaseModel):
    model: ModelRef
    predictions: list[TopicPrediction]


class PricePrediction(BaseModel):
    price: float = Field(description="Predicted median home value, thousands of dollars.")
    price_usd: float = Field(description="The same in dollars, to the cent.")
    out_of_range: list[str] = Field(
        description="Features outside the range seen in training: extrapolation, trust less."
    )
    explanation: list[FeatureEffect] | None = Field(
        None, description="With explain: each feature's effect, largest |effect| first."
    )


class BostonResponse(BaseModel):
    model: ModelRef
    predictions: list[PricePrediction]
