"""The text classifier on a TF-IDF bag (card ``preprocessing.kind`` ``"tfidf-bag"``, the
version-2 IMDB and Reuters networks): raw text → ``service.contract.tfidf`` → ``terms`` and ``weights``
→ network → the same labelled answers as the multi-hot version.

It is the text kind (``TextClassifier``, chosen by the card's ``"kind"``) with another
preprocessing: the answers, labels, top-k and thresholds are the multi-hot ones, and so is the
book endpoint's contract. What changes:

* inputs are raw text only (``text``, ``texts``; V2 ``text``): Keras word-id sequences are the
  multi-hot models' vocabulary, not this one's, so ``sequences`` (and V2 ``word_ids``) are
  refused with a message that says so;
* ``explain`` names *terms* (a word or a word pair) and their exact effect: the prediction minus
  the prediction on the text's row without that term, renormalised as the server would;
  ``unknown_words`` counts the words that are not vocabulary terms;
* the load-time probe checks that padding does not change an answer (texts alone against the
  same texts in one padded batch), through the same engine the requests use.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import numpy as np
from pydantic import BeforeValidator, Field, StrictBool, StrictInt, create_model

from service.contract.artifacts import ArtifactError
from service.contract.tfidf import KIND, Bag, TfidfBag, normalized, pad
from service.engine.runtime import Runtime
from service.kinds.base import (
    VERSION_FIELD,
    InputForms,
    Limits,
    Problem,
    TensorSpec,
    Version,
    camel,
    exactly_one_of,
    integral_float_to_int,
    raise_problems,
    with_examples,
)
from service.kinds.text import (
    BinaryPrediction,
    ClassPrediction,
    NonEmptyText,
    TextClassifier,
    TextExplanation,
    _column,
    check_labels,
    document_text_limits,
    explanation,
    note_text,
    text_cost,
    text_problem,
)
from service.observe.drift import Signals

EXPLAIN_CHUNK = 64
"""Rows per engine call when explaining: a 2,000-term review is 2,001 rows of 2,000 terms, which
in one call would gather 4 million embedding rows at once."""


class BagTextRequest(InputForms):
    """One text or a batch of texts (a TF-IDF model reads raw text only)."""

    input_forms = ("text", "texts")
    batch_forms = ("texts",)

    text: NonEmptyText = Field(None, description="One raw text.")  # type: ignore[assignment]
    texts: list[NonEmptyText] = Field(  # type: ignore[assignment]
        None, min_length=1, description="Raw texts; at most MAX_BATCH_SIZE (default 1,000)."
    )
    version: Version = VERSION_FIELD  # type: ignore[assignment]
    explain: StrictBool = Field(
        False, description="Add each input's terms (words and word pairs) with their exact effect."
    )
    explain_top: Annotated[
        StrictInt, Field(ge=1, le=10_000), BeforeValidator(integral_float_to_int)
    ] = Field(10, description="How many terms the explanation lists, largest effect first.")

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts)

    @classmethod
    def document_limits(cls, properties: dict[str, Any], limits: Limits) -> None:
        super().document_limits(properties, limits)
        document_text_limits(properties, limits)


def bag_request_model(name: str, labels: Sequence[str], example: str) -> type[InputForms]:
    """The typed request of one TF-IDF text model: ``top_k`` when there are more than two labels."""
    fields: dict[str, Any] = {}
    examples: list[dict[str, Any]] = [{"text": example}, {"text": example, "explain": True}]
    if len(labels) > 2:
        fields["top_k"] = (
            Annotated[
                StrictInt, Field(ge=1, le=len(labels)), BeforeValidator(integral_float_to_int)
            ],
            Field(min(3, len(labels)), description="How many best classes to list under 'top'."),
        )
        examples[0]["top_k"] = min(3, len(labels))
    model = create_model(f"{camel(name)}BagRequest", __base__=BagTextRequest, **fields)
    return with_examples(model, exactly_one_of(BagTextRequest.input_forms, examples))


class BagTextClassifier(TextClassifier):
    """A ``text-classifier`` whose card's preprocessing is ``tfidf-bag``."""

    preprocessing: ClassVar[str | None] = KIND
    request_base: ClassVar[type[InputForms]] = BagTextRequest

    def __init__(self, name: str, card: dict[str, Any], bag: TfidfBag, runtime: Runtime) -> None:
        self.name = name
        self.card = card
        self.labels = card["labels"]
        self.binary = len(self.labels) == 2
        self.bag = bag
        self.runtime = runtime
        example = (
            card.get("example") if isinstance(card.get("example"), str) else "A text to classify."
        )
        self.request_model = bag_request_model(name, self.labels, example)
        self.prediction_model = BinaryPrediction if self.binary else ClassPrediction

    @classmethod
    def load(cls, name: str, card: dict[str, Any], folder: Path, runtime: Runtime) -> Self:
        check_labels(card, folder)
        preprocessing = card["preprocessing"]
        try:
            bag = TfidfBag.read(folder, preprocessing)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ArtifactError(f"{folder} vocabulary cannot be read: {error}") from None
        if tuple(getattr(runtime, "inputs", ())) not in (
            ("terms", "weights"),
            ("weights", "terms"),
        ):
            raise ArtifactError(f"{folder} network must read inputs 'terms' and 'weights', it reads "
                                f"{list(getattr(runtime, 'inputs', ()))}")  # fmt: skip
        return cls(name, card, bag, runtime)

    @property
    def input_forms(self) -> tuple[str, ...]:
        return BagTextRequest.input_forms

    @property
    def num_words(self) -> int:
        return self.bag.size

    # preprocess → predict → postprocess

    def vectorize(self, texts: Sequence[str], seen: Signals | None = None) -> Bag:
        """Texts → one padded bag; with ``seen``, each text's words and unknown words noted."""
        rows = []
        for text in texts:
            terms, weights, words, unknown = self.bag.weigh(text)
            if seen is not None:
                note_text(seen, words, unknown)
            rows.append((terms, normalized(weights)))
        return pad(rows)

    def run(self, bag: Bag) -> np.ndarray:
        return np.asarray(self.runtime.run(bag.feeds()), dtype=np.float32)

    def check(self, body: Any, limits: Limits) -> tuple[int, int]:
        if getattr(body, "sequences", None) is not None:
            raise_problems([Problem(("sequences",), (
                f"version {self.card.get('version', '')} of '{self.name}' reads raw text only "
                f"(a TF-IDF vocabulary of words and word pairs, not Keras word ids): send 'text' "
                f"or 'texts'"))])  # fmt: skip
        raise_problems(limits.batches(body, BagTextRequest.batch_forms))
        texts = body.items()
        places = [("text",)] if body.text is not None else [("texts", i) for i in range(len(texts))]
        raise_problems([text_problem(limits, place, text) for place, text in zip(places, texts)])
        cost = text_cost(len(texts), sum(len(text) for text in texts))
        return len(texts), cost * (10 if body.explain else 1)

    def scores(self, items: Sequence[str], seen: Signals | None = None) -> np.ndarray:  # type: ignore[override]
        return self.run(self.vectorize(items, seen))

    def explain_item(self, item: str, column: int, top: int) -> TextExplanation:  # type: ignore[override]
        return self.explain_terms(item, column, top)

    def explain_terms(self, text: str, column: int, top: int) -> TextExplanation:
        """Each term's exact effect on output ``column``: the text's row, then the row without
        each of its terms (renormalised, as a text without that term would be)."""
        terms, weights, _, unknown = self.bag.weigh(text)
        keep = ~np.eye(len(terms), dtype=bool)
        rows = [(terms, normalized(weights))]
        rows += [(terms[keep[i]], normalized(weights[keep[i]])) for i in range(len(terms))]
        score = partial(_column, column)
        scores = np.concatenate([score(self.run(pad(rows[i : i + EXPLAIN_CHUNK], len(terms) or 1)))
                                 for i in range(0, len(rows), EXPLAIN_CHUNK)])  # fmt: skip
        return explanation(scores, terms, self.bag.term, top, unknown)

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """Texts one by one (each unpadded) against the same texts in one padded batch: padding
        must not move an answer. Also warms the engine on short and long rows."""
        vocabulary = self.bag.terms
        step = max(1, len(vocabulary) // 997)
        texts = ["", vocabulary[0], " ".join(vocabulary[::step]), " ".join(vocabulary[:50]),
                 "a text of words no vocabulary holds: zzqx qqzv"]  # fmt: skip
        alone = np.concatenate([self.run(self.vectorize([text])) for text in texts])
        return alone, self.run(self.vectorize(texts))

    # V2

    def v2_inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("text", "BYTES", (-1,)),)

