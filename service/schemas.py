"""Request and response bodies: the service's contract, as pydantic models.

Every request model forbids unknown keys and takes exactly one input form, so a typo such as
``{"txt": ...}`` is a 422 naming the field, never a silently empty prediction. Limits that come
from settings (batch size, text length) are checked in ``service.limits`` with
the same 422 shape, because pydantic models are built before the settings are read.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

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

MAX_FEATURE = 1e9
FiniteNumber = Annotated[
    StrictFloat, Field(allow_inf_nan=False, ge=-MAX_FEATURE, le=MAX_FEATURE)
]
"""A housing feature: a finite JSON number (no NaN, no Infinity, nor 1e400 which parses to it,
no strings) within ±1e9, far past any real district yet safely inside float32's range."""
MAX_WORD_ID = 2**31 - 1


def _integral_float_to_int(value: object) -> object:
    """JSON Schema counts 14.0 as an integer; so do we. 14.5, "14" and true stay errors."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WordId = Annotated[StrictInt, Field(ge=0, le=MAX_WORD_ID), BeforeValidator(_integral_float_to_int)]
"""A Keras word id: a JSON integer from 0 to 2**31 - 1 (no fractions, strings or booleans)."""
NonEmptyText = Annotated[str, Field(min_length=1)]


def _version_to_text(value: object) -> object:
    """A version may be given as 2 or "2" (or 2.0); the API names versions as strings."""
    value = _integral_float_to_int(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Version = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$"), BeforeValidator(_version_to_text)]
"""A model version: a positive integer, as a JSON number or string (``2`` or ``"2"``)."""

VERSION_FIELD = Field(
    None, description="Model version to use (a positive integer); default: the highest served."
)


def exactly_one_of(forms: tuple[str, ...], examples: list[dict]) -> dict:
    """The JSON Schema side of ``_Input``'s rule, so generated clients and fuzzers know it too."""
    return {"oneOf": [{"required": [form]} for form in forms], "examples": examples}


class _Input(BaseModel):
    """Exactly one input form. The form fields default to absent but are never nullable:
    ``{"text": null}`` is a 422, and the documented schema says so."""

    model_config = ConfigDict(extra="forbid")

    input_forms: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> Self:
        given = [form for form in self.input_forms if getattr(self, form) is not None]
        if len(given) != 1:
            forms = ", ".join(f"'{form}'" for form in self.input_forms)
            found = ", ".join(f"'{form}'" for form in given) or "none"
            raise ValueError(f"give exactly one of {forms}; found {found}")
        return self


class TextInput(_Input):
    """One text, a batch of texts, or a batch of Keras word-id sequences."""

    input_forms = ("text", "texts", "sequences")

    text: NonEmptyText = Field(None, description="One raw text.")  # type: ignore[assignment]
    texts: list[NonEmptyText] = Field(  # type: ignore[assignment]
        None, min_length=1, description="Raw texts; at most MAX_BATCH_SIZE (default 1,000)."
    )
    sequences: list[list[WordId]] = Field(  # type: ignore[assignment]
        None,
        min_length=1,
        description=(
            "Keras word-id sequences (rank + 3; 1 start, 2 out of vocabulary, 0 padding is "
            "ignored); ids at or past 10,000 count as out of vocabulary, as in Keras' "
            "load_data(num_words=10000); at most MAX_TEXT_CHARS ids per sequence."
        ),
    )

    version: Version = VERSION_FIELD  # type: ignore[assignment]
    explain: StrictBool = Field(
        False, description="Add each input's words with their exact effect on the prediction."
    )
    explain_top: Annotated[
        StrictInt, Field(ge=1, le=10_000), BeforeValidator(_integral_float_to_int)
    ] = Field(10, description="How many words the explanation lists, largest effect first.")

    def items(self) -> list[str] | list[list[int]]:
        """The inputs as a batch, in order."""
        if self.text is not None:
            return [self.text]
        return self.texts if self.texts is not None else self.sequences  # type: ignore[return-value]


class ImdbRequest(TextInput):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=exactly_one_of(
            TextInput.input_forms,
            [
                {"text": SAMPLE_REVIEW},
                {"texts": [SAMPLE_REVIEW, "Dull."]},
                {"text": SAMPLE_REVIEW, "explain": True, "explain_top": 5},
            ],
        ),
    )


class ReutersRequest(TextInput):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=exactly_one_of(
            TextInput.input_forms,
            [{"text": SAMPLE_NEWSWIRE, "top_k": 3}, {"text": SAMPLE_NEWSWIRE, "explain": True}],
        ),
    )

    top_k: Annotated[StrictInt, Field(ge=1, le=46), BeforeValidator(_integral_float_to_int)] = Field(
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


class BostonRequest(_Input):
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

    def rows(self) -> list[list[float]]:
        """The inputs as a batch of 13-number rows, in order."""
        if self.features is not None:
            return [self.features]
        if self.instances is not None:
            return self.instances
        return [record.row() for record in self.records or []]


class ModelRef(BaseModel):
    name: str
    version: str


class WordEffect(BaseModel):
    word: str
    effect: float = Field(
        description="The prediction minus the prediction with this word removed (all its uses)."
    )


class TextExplanation(BaseModel):
    """Exact, not estimated: the model reads a set of words, so removing one is one model call."""

    words: list[WordEffect] = Field(description="The top explain_top words, largest |effect| first.")
    unknown_words: int = Field(
        description="Words of the input that did not reach the model as themselves: out of the "
        "10,000-word vocabulary or not in the word index."
    )


class FeatureEffect(BaseModel):
    feature: str
    value: float
    effect: float = Field(
        description="The price minus the price with this feature at its training mean ($1000s)."
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


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words.")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body' then the field path.")
    msg: str = Field(description="What is wrong with it.")
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationIssue]


class ModelSummary(BaseModel):
    name: str
    version: str = Field(description="The default version: the highest served ('' if none).")
    versions: list[str] = Field(description="Every served version, lowest first.")
    task: str
    ready: bool
    inputs: list[str] = Field(description="Accepted input forms.")
    metric: dict[str, float] = Field(description="The default version's headline test metric.")
    error: str | None = Field(None, description="Why a model or version is not served, if any.")


class VersionSummary(BaseModel):
    version: str
    created: str = Field(description="When training wrote it (UTC, ISO 8601).")
    metrics: dict[str, float] = Field(description="Its test metrics, from its model card.")


class ModelList(BaseModel):
    models: list[ModelSummary]


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(description="Each model's state: 'ready' or the reason it is not.")
    serving: dict[str, str] = Field(description="Each model's default version.")
    failures: dict[str, str] = Field(
        description="Model folders or versions ('imdb/3') that failed to load, and why. A failed "
        "version does not make the service unready while another version of its model serves."
    )


class ReloadReport(BaseModel):
    """What one reload changed. Versions are named ``model/version``."""

    loaded: list[str] = Field(default_factory=list, description="Versions loaded, verified and now served.")
    unloaded: list[str] = Field(default_factory=list, description="Versions whose folder is gone.")
    unchanged: list[str] = Field(default_factory=list, description="Versions reused as they were.")
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="What failed to load and why; a version loaded before keeps serving.",
    )
    serving: dict[str, str] = Field(
        default_factory=dict, description="Each model's default version after the reload."
    )
    seconds: float = Field(0.0, description="Time the reload took.")
