"""The text classifier: raw text (or Keras word ids) → multi-hot → network → labelled probabilities.

The card names the labels. With two, the network ends in one sigmoid unit giving the probability
of the second label (IMDB: ``["negative", "positive"]``); with more, one softmax unit per label,
in label order (Reuters' 46 topics). Tokenizing and encoding are ``service.contract.vectorize``'s, the
module training uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictInt, create_model

from service.contract.artifacts import ArtifactError, read_word_index
from service.contract.vectorize import OOV_ID, START_ID, WordIndex, hot_positions, multi_hot
from service.engine.runtime import Runtime
from service.kinds.base import (
    VERSION_FIELD,
    InputForms,
    Kind,
    Limits,
    Loc,
    Problem,
    Tensor,
    TensorBounds,
    TensorSpec,
    Version,
    camel,
    exactly_one_of,
    integral_float_to_int,
    raise_problems,
    with_examples,
)
from service.observe.drift import Series, Signals

THRESHOLD = 0.5
"""A binary classifier answers its second label when the probability is at least this."""

MAX_WORD_ID = 2**31 - 1
WordId = Annotated[StrictInt, Field(ge=0, le=MAX_WORD_ID), BeforeValidator(integral_float_to_int)]
"""A Keras word id: a JSON integer from 0 to 2**31 - 1 (no fractions, strings or booleans)."""
NonEmptyText = Annotated[str, Field(min_length=1)]

# --- Drift signals (``service.observe.drift``) ---------------------------------------------

WORDS_BUCKETS = (0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
UNKNOWN_RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)

TEXT_WORDS = Series(
    "model_input_text_words", "Words per input text (or word ids past the start id per sequence).",
    buckets=WORDS_BUCKETS,
)  # fmt: skip
UNKNOWN_WORD_RATIO = Series(
    "model_input_unknown_word_ratio",
    "Per text of at least one word: share of its words not in the served vocabulary "
    "(missing from the word index, or ranked at or past num_words).",
    buckets=UNKNOWN_RATIO_BUCKETS,
)  # fmt: skip


def note_text(seen: Signals, words: int, unknown: int) -> None:
    """One text (or word-id sequence): its words, and how many the model could not read
    (for a text, words missing from the index or ranked past ``num_words``; for word ids, the
    out-of-vocabulary id 2 and ids at or past ``num_words``). A text of no words has no ratio."""
    seen.observe(TEXT_WORDS, words)
    if words:
        seen.observe(UNKNOWN_WORD_RATIO, unknown / words)


# --- Limits and cost --------------------------------------------------------------------------


def text_problem(limits: Limits, loc: Loc, text: str) -> Problem | None:
    """A text longer than ``MAX_TEXT_CHARS``."""
    if len(text) > limits.max_text_chars:
        return Problem(
            loc, f"at most {limits.max_text_chars} characters allowed, got {len(text)}",
            "string_too_long",
        )  # fmt: skip
    return None


def sequence_problem(limits: Limits, loc: Loc, length: int) -> Problem | None:
    """A word-id sequence longer than ``MAX_TEXT_CHARS`` ids."""
    if length > limits.max_text_chars:
        return Problem(
            loc, f"at most {limits.max_text_chars} word ids allowed, got {length}", "too_long"
        )
    return None


def document_text_limits(properties: dict[str, Any], limits: Limits) -> None:
    """``MAX_TEXT_CHARS`` in a text request's JSON Schema: each text's ``maxLength``, each
    word-id sequence's ``maxItems``."""
    if "text" in properties:
        properties["text"]["maxLength"] = limits.max_text_chars
    if "texts" in properties:
        properties["texts"]["items"]["maxLength"] = limits.max_text_chars
    if "sequences" in properties:
        properties["sequences"]["items"]["maxItems"] = limits.max_text_chars


def text_cost(items: int, characters: int) -> int:
    """A batch of texts' cost in short items, which ``service.serving.offload`` weighs: one per
    item, or one per 2,500 characters (word ids) when the texts are long."""
    return max(items, characters // 2_500)

# --- Request and answer bodies -------------------------------------------------------------


class TextRequest(InputForms):
    """One text, a batch of texts, or a batch of Keras word-id sequences."""

    input_forms = ("text", "texts", "sequences")
    batch_forms = ("texts", "sequences")

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
        StrictInt, Field(ge=1, le=10_000), BeforeValidator(integral_float_to_int)
    ] = Field(10, description="How many words the explanation lists, largest effect first.")

    def items(self) -> list[str] | list[list[int]]:
        """The inputs as a batch, in order."""
        if self.text is not None:
            return [self.text]
        return self.texts if self.texts is not None else self.sequences  # type: ignore[return-value]

    @classmethod
    def document_limits(cls, properties: dict[str, Any], limits: Limits) -> None:
        super().document_limits(properties, limits)
        document_text_limits(properties, limits)


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


class BinaryPrediction(BaseModel):
    label: str = Field(description="The second label when probability ≥ 0.5, else the first.")
    probability: float = Field(ge=0, le=1, description="Probability of the second label.")
    explanation: TextExplanation | None = Field(
        None, description="With explain: effects on the probability of the second label."
    )


class ClassScore(BaseModel):
    class_id: int = Field(ge=0)
    label: str
    probability: float = Field(ge=0, le=1)


class ClassPrediction(BaseModel):
    label: str = Field(description="Name of the most probable class.")
    class_id: int = Field(ge=0)
    probabilities: list[float] = Field(description="One probability per label, in label order.")
    top: list[ClassScore] = Field(description="The top_k classes, most probable first.")
    explanation: TextExplanation | None = Field(
        None, description="With explain: effects on the probability of the predicted class."
    )


def request_model(name: str, labels: Sequence[str], num_words: int, example: str) -> type[InputForms]:
    """The typed request of one text model, for /docs and validation: ``top_k`` up to the number
    of labels when there are more than two, the vocabulary size in the ``sequences`` text."""
    fields: dict[str, Any] = {
        "sequences": (
            list[list[WordId]],
            Field(None, min_length=1, description=(
                f"Keras word-id sequences (rank + 3; 1 start, 2 out of vocabulary, 0 padding is "
                f"ignored); ids at or past {num_words:,} count as out of vocabulary; at most "
                f"MAX_TEXT_CHARS ids per sequence."
            )),
        ),
    }  # fmt: skip
    examples: list[dict[str, Any]] = [{"text": example}, {"text": example, "explain": True}]
    if len(labels) > 2:
        fields["top_k"] = (
            Annotated[StrictInt, Field(ge=1, le=len(labels)), BeforeValidator(integral_float_to_int)],
            Field(min(3, len(labels)), description="How many best classes to list under 'top'."),
        )
        examples[0]["top_k"] = min(3, len(labels))
    model = create_model(f"{camel(name)}Request", __base__=TextRequest, **fields)
    return with_examples(model, exactly_one_of(TextRequest.input_forms, examples))


# --- The kind -------------------------------------------------------------------------------

Score = Callable[[np.ndarray], np.ndarray]
"""Picks, from a batch of model outputs, the number being explained (one per row)."""


class TextClassifier(Kind):
    """A ``text-classifier`` on a multi-hot row of word ids (the book's IMDB and Reuters)."""

    kind: ClassVar[str] = "text-classifier"
    headline_metric: ClassVar[str] = "test_accuracy"
    request_base: ClassVar[type[InputForms]] = TextRequest
    signals: ClassVar[tuple[Series, ...]] = (TEXT_WORDS, UNKNOWN_WORD_RATIO)

    def __init__(self, name: str, card: dict[str, Any], word_index: WordIndex, runtime: Runtime) -> None:
        self.name = name
        self.card = card
        self.labels: list[str] = card["labels"]
        self.binary = len(self.labels) == 2
        self.word_index = word_index
        self.runtime = runtime
        example = card.get("example") if isinstance(card.get("example"), str) else "A text to classify."
        self.request_model = request_model(name, self.labels, word_index.num_words, example)
        self.prediction_model = BinaryPrediction if self.binary else ClassPrediction

    @classmethod
    def load(cls, name: str, card: dict[str, Any], folder: Path, runtime: Runtime) -> Self:
        check_labels(card, folder)
        num_words = card.get("preprocessing", {}).get("num_words")
        if not isinstance(num_words, int) or num_words <= 3:
            raise ArtifactError(f"{folder} metadata.json needs preprocessing.num_words (> 3)")
        try:
            word_index = WordIndex(read_word_index(folder), num_words)
        except (OSError, ValueError, AttributeError) as error:
            raise ArtifactError(f"{folder} word index cannot be read: {error}") from None
        return cls(name, card, word_index, runtime)

    @property
    def input_forms(self) -> tuple[str, ...]:
        return TextRequest.input_forms

    @property
    def output_width(self) -> int:
        return 1 if self.binary else len(self.labels)

    @property
    def num_words(self) -> int:
        return self.word_index.num_words

    # preprocess → predict → postprocess

    def positions(
        self, items: Sequence[str] | Sequence[Sequence[int]], seen: Signals | None = None
    ) -> list[Sequence[int]]:
        """Texts or word-id sequences → each one's multi-hot row, as its sorted 1-positions. One
        item at a time: a batch of 1,000 reviews never holds all its token lists. With ``seen``,
        each item's words and unknown words are noted on the way (``service.observe.drift``
        defines them: for a text, words missing from the index or ranked past ``num_words``)."""
        return [self.position(item, seen) for item in items]

    def position(self, item: str | Sequence[int], seen: Signals | None = None) -> Sequence[int]:
        if isinstance(item, str):
            positions, words, unknown = self.word_index.read(item)
        else:
            ids = np.asarray(item, dtype=np.int64)
            positions = hot_positions(ids, self.num_words)
            words = int((ids > START_ID).sum())
            unknown = int(((ids == OOV_ID) | (ids >= self.num_words)).sum())
        if seen is not None:
            note_text(seen, words, unknown)
        return positions

    def predict(self, positions: Sequence[Sequence[int]]) -> np.ndarray:
        return self.runtime.from_positions(positions, self.num_words)

    def postprocess(self, scores: np.ndarray, top_k: int | None = None) -> list[BaseModel]:
        """Labels, once: the threshold for two labels, the ranking for more."""
        if self.binary:
            return [
                BinaryPrediction(label=label, probability=p)
                for label, p in zip(self.labels_of(scores), scores[:, 0].tolist())
            ]
        labels = self.labels
        best_first = np.argsort(-scores, axis=1, kind="stable")[:, : top_k or 1]
        predictions: list[BaseModel] = []
        for row, order in zip(scores.tolist(), best_first.tolist()):
            top = [ClassScore(class_id=i, label=labels[i], probability=row[i]) for i in order]
            predictions.append(
                ClassPrediction(label=top[0].label, class_id=top[0].class_id, probabilities=row, top=top)
            )
        return predictions

    def labels_of(self, scores: np.ndarray) -> list[str]:
        """Each row's label: the threshold for two labels, the best score for more (the first
        best on a tie, as ``postprocess``' stable ranking)."""
        if self.binary:
            return [self.labels[p >= THRESHOLD] for p in scores[:, 0].tolist()]
        return [self.labels[i] for i in np.argmax(scores, axis=1).tolist()]

    def check(self, body: TextRequest, limits: Limits) -> tuple[int, int]:
        raise_problems(limits.batches(body, TextRequest.batch_forms))
        if body.text is not None:
            problems = [text_problem(limits, ("text",), body.text)]
        else:
            problems = [text_problem(limits, ("texts", i), text)
                        for i, text in enumerate(body.texts or [])]  # fmt: skip
        problems += [sequence_problem(limits, ("sequences", i), len(sequence))
                     for i, sequence in enumerate(body.sequences or [])]  # fmt: skip
        raise_problems(problems)
        items = body.items()
        # An explained input costs one extra row per distinct word: keep those off the loop.
        cost = text_cost(len(items), sum(len(item) for item in items))
        return len(items), cost * (10 if body.explain else 1)

    def answer(self, body: TextRequest, seen: Signals | None = None) -> list[BaseModel]:
        items = body.items()
        scores = self.scores(items, seen)
        predictions = self.postprocess(scores, getattr(body, "top_k", None))
        if seen is not None:
            seen.labels.extend(p.label for p in predictions)  # type: ignore[attr-defined]
        if body.explain:
            for item, prediction in zip(items, predictions):
                column = 0 if self.binary else prediction.class_id  # type: ignore[attr-defined]
                prediction.explanation = self.explain_item(item, column, body.explain_top)  # type: ignore[attr-defined]
        return predictions

    def scores(self, items: Sequence[str] | Sequence[Sequence[int]], seen: Signals | None = None) -> np.ndarray:
        """preprocess → predict: the network's outputs for a batch of items (the hook a text
        kind with another vectorization overrides, with ``explain_item``)."""
        return np.asarray(self.predict(self.positions(items, seen)), dtype=np.float32)

    def explain_item(self, item: str | Sequence[int], column: int, top: int) -> TextExplanation:
        """The explanation of one item's output ``column``."""
        return self.explain(item, partial(_column, column), top)

    def explain(self, item: str | Sequence[int], score: Score, top: int) -> TextExplanation:
        """Each word's exact effect on ``score``: the input's row, then the row without each of
        its words, all in one batched call."""
        if isinstance(item, str):
            sequence, unknown = self.word_index.encode_counting_unknown(item)
        else:
            sequence, unknown = item, sum(1 for i in item if i == OOV_ID or i >= self.num_words)
        positions = hot_positions(sequence, self.num_words)
        words = positions[(positions != START_ID) & (positions != OOV_ID)]
        rows = [positions, *(positions[positions != word] for word in words)]
        return explanation(score(self.predict(rows)), words, self.word_index.word, top, unknown)

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """Word-id sequences that touch every input weight: a check and a warm-up."""
        rng = np.random.default_rng(0)
        sequences = [[1], list(range(self.num_words))] + [
            rng.integers(1, self.num_words, size=size).tolist() for size in (10, 100, 1000)
        ]
        expected = self.runtime.reference(multi_hot(sequences, self.num_words))
        return expected, self.predict(self.positions(sequences))

    # V2

    def v2_inputs(self) -> tuple[TensorSpec, ...]:
        return (
            TensorSpec("text", "BYTES", (-1,)),
            TensorSpec("word_ids", "INT64", (-1, -1), accepts=("INT32",)),
        )

    def v2_outputs(self) -> tuple[TensorSpec, ...]:
        scores = ("probability", 1) if self.binary else ("probabilities", len(self.labels))
        return TensorSpec(scores[0], "FP32", (-1, scores[1])), TensorSpec("label", "BYTES", (-1,))

    def v2_batch(self, tensor: Tensor, limits: Limits) -> list[Any]:
        raise_problems([limits.batch((tensor.name,), tensor.shape[0])])
        if tensor.name == "text":
            texts = [_decoded(element, (tensor.name, i)) for i, element in enumerate(tensor.data)]
            raise_problems([text_problem(limits, ("text", i), t) for i, t in enumerate(texts)])
            return texts
        values = np.asarray(tensor.data).reshape(tensor.shape)
        raise_problems([sequence_problem(limits, (tensor.name,), tensor.shape[1])])
        if values.size and (values.min() < 0 or values.max() > MAX_WORD_ID):
            raise_problems([Problem((tensor.name,), f"word ids must be from 0 to {MAX_WORD_ID}")])
        return list(values.astype(np.int64))

    def v2_cost(self, tensor: Tensor, batch: list[Any]) -> int:
        """Texts cost by their characters too; word-id rows one each."""
        characters = sum(len(text) for text in batch) if tensor.name == "text" else 0
        return text_cost(len(batch), characters)

    def v2_bounds(self, spec: TensorSpec, limits: Limits) -> TensorBounds:
        """Texts of 1 to ``MAX_TEXT_CHARS`` characters; word ids of 0 to 2**31 - 1, rows of up
        to ``MAX_TEXT_CHARS`` ids."""
        if spec.datatype == "BYTES":
            return TensorBounds({"minLength": 1, "maxLength": limits.max_text_chars})
        return TensorBounds({"minimum": 0, "maximum": MAX_WORD_ID}, limits.max_text_chars)

    def v2_answer(
        self, input_name: str, batch: list[Any], seen: Signals | None = None
    ) -> dict[str, Tensor]:
        scores = self.scores(batch, seen)
        score_spec, label_spec = self.v2_outputs()
        n, labels = len(batch), self.labels_of(scores)
        if seen is not None:
            seen.labels.extend(labels)
        return {
            score_spec.name: Tensor(score_spec.name, "FP32", (n, self.output_width), scores),
            label_spec.name: Tensor("label", "BYTES", (n,), [x.encode() for x in labels]),
        }


def check_labels(card: dict[str, Any], folder: Path) -> None:
    """``ArtifactError`` unless the card names at least two distinct labels."""
    labels = card.get("labels")
    if not (
        isinstance(labels, list) and len(labels) >= 2 and len(set(labels)) == len(labels)
        and all(isinstance(label, str) and label for label in labels)
    ):  # fmt: skip
        raise ArtifactError(
            f"{folder} metadata.json needs 'labels': at least two distinct names, in the "
            f"order of the network's outputs"
        )


def _column(column: int, outputs: np.ndarray) -> np.ndarray:
    return outputs[:, column]


def explanation(
    scores: np.ndarray, ids: np.ndarray, name: Callable[[int], str], top: int, unknown: int
) -> TextExplanation:
    """The ``top`` largest effects, by size: ``scores[0]`` is the whole input's, ``scores[1 + i]``
    the input's without the item ``ids[i]`` (a word, or a term), which ``name`` names."""
    effects = scores[0] - scores[1:]
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    return TextExplanation(
        words=[WordEffect(word=name(int(ids[i])), effect=float(effects[i])) for i in order],
        unknown_words=unknown,
    )


def _decoded(element: bytes, loc: tuple[str | int, ...]) -> str:
    try:
        text = element.decode("utf-8")
    except UnicodeDecodeError:
        raise_problems([Problem(loc, "is not valid UTF-8")])
    if not text:
        raise_problems([Problem(loc, "is empty")])
    return text
