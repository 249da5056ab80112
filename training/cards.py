"""The kind-specific part of a model card: what the service needs to turn a request into the
model's input, and the model's output into an answer.

Every card names its ``"kind"``; the service reads the rest of the card by it:

* ``text-classifier``: raw text goes through ``service.contract.vectorize`` (tokenize, word ids from
  ``word_index.json`` beside the card, multi-hot of width ``num_words``) into the input layer
  ``multi_hot``. ``labels`` names the classes: with two, the network ends in one sigmoid unit
  giving P(``labels[1]``); with more, in a softmax over the labels in their order.
* ``table-regressor``: raw numbers in the order of ``features`` go into the input layer
  ``features``; a Normalization layer adapted on the training rows is inside the model. The
  single output is answered as the JSON field ``target.field``, plus any ``target.derived``
  fields (``round(value * scale, decimals)``).

The book's models (``training.export.write_artifact``) and the models fitted on a user's own file
(``training.fit``) both describe themselves with these classes, so the service reads one format.
Each is named after the served kind whose card it writes (``TextClassifierCard`` for the service's
``TextClassifier``): it builds the card, it does not serve.
This module does not import Keras: it reads the trained model's layers, never builds one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from service.contract.artifacts import WORD_INDEX_FILE
from service.contract.vectorize import INDEX_FROM, NUM_WORDS, OOV_ID, START_ID, TOKENIZER, multi_hot
from training.datasets import Column

TEXT_CLASSIFIER = "text-classifier"
TABLE_REGRESSOR = "table-regressor"


def text_preprocessing(word_index: dict[str, int], num_words: int = NUM_WORDS) -> dict[str, Any]:
    """How raw text becomes the model's input, as ``service.contract.vectorize`` will do it."""
    return {
        "kind": "multi-hot", "num_words": num_words, "index_from": INDEX_FROM,
        "start_id": START_ID, "oov_id": OOV_ID, "word_index_size": len(word_index),
        "tokenizer": TOKENIZER,
    }  # fmt: skip


@dataclass(frozen=True)
class TextClassifierCard:
    """A classifier of raw text: its labels in output order and the word index its input uses."""

    labels: Sequence[str]
    word_index: dict[str, int]
    num_words: int = NUM_WORDS
    kind: ClassVar[str] = TEXT_CLASSIFIER

    @property
    def task(self) -> str:
        return "binary-classification" if len(self.labels) == 2 else "multiclass-classification"

    def inputs(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Word-id sequences → the multi-hot rows the network reads."""
        return multi_hot(sequences, self.num_words)

    def card(self, model: Any, x_train: Any, y_train: Any) -> dict[str, Any]:
        return {
            "preprocessing": text_preprocessing(self.word_index, self.num_words),
            "labels": list(self.labels),
        }

    def files(self) -> dict[str, str]:
        """The files the card refers to, written beside it: the whole word index."""
        return {WORD_INDEX_FILE: json.dumps(self.word_index, ensure_ascii=False)}


@dataclass(frozen=True)
class Derived:
    """An answer field computed from the model's output: ``round(value * scale, decimals)``."""

    field: str
    scale: float
    decimals: int


@dataclass(frozen=True)
class TableRegressorCard:
    """A regressor of one number from a row of raw numbers, normalized inside the model."""

    features: Sequence[Column]
    target: Column
    field: str = "value"
    """The JSON field the service answers the prediction as."""
    derived: Sequence[Derived] = ()
    kind: ClassVar[str] = TABLE_REGRESSOR
    task: ClassVar[str] = "regression"

    def inputs(self, rows: Any) -> np.ndarray:
        return np.asarray(rows, dtype="float32")

    def card(self, model: Any, x_train: Any, y_train: Any) -> dict[str, Any]:
        """Normalization statistics, and each column's training range: the service flags a value
        outside it (the model extrapolates there) and explains against the training mean."""
        normalization = model.get_layer("normalization")
        x = np.asarray(x_train, dtype="float64")
        y = np.asarray(y_train, dtype="float64")
        features = [
            {**_column_card(column, x[:, i]), "train_std": float(x[:, i].std())}
            for i, column in enumerate(self.features)
        ]
        target = {**_column_card(self.target, y), "field": self.field}
        if self.derived:
            target["derived"] = [
                {"field": d.field, "scale": d.scale, "decimals": d.decimals} for d in self.derived
            ]
        preprocessing = {
            "kind": "normalization-in-model",
            "mean": np.asarray(normalization.mean).ravel().tolist(),
            "std": np.sqrt(np.asarray(normalization.variance)).ravel().tolist(),
        }
        return {"preprocessing": preprocessing, "features": features, "target": target}

    def files(self) -> dict[str, str]:
        return {}


def _column_card(column: Column, values: np.ndarray) -> dict[str, Any]:
    return {
        "name": column.name, "description": column.description, "unit": column.unit,
        "train_min": float(values.min()), "train_max": float(values.max()),
        "train_mean": float(values.mean()),
    }  # fmt: skip


Output = TextClassifierCard | TableRegressorCard
"""What a model card says about a model's input and output."""
