"""Raw text → TF-IDF bag of word n-grams: the version-2 text models' one vectorization, shared by
training and serving.

A version-1 text model reads a 10,000-wide multi-hot row. A version-2 model reads the same text
as a *bag*: the ids of its distinct terms (words and word pairs from ``service.contract.vectorize``'s
tokenizer, so both versions see the same words) and one TF-IDF weight per term. The network's
first layer, an embedding looked up at those ids and summed with those weights, is then exactly
"TF-IDF row times a weight matrix", at the cost of the row's distinct terms, not of the
vocabulary (200,000 terms).

The rules, recorded on the card (``TfidfBag.card``) and in the vocabulary file beside the model:

* terms: the tokens, then each pair of adjacent tokens joined by one space (``ngram_max`` 2);
  tokens never hold a space, so a pair cannot collide with a word;
* vocabulary: the ``size`` terms in the most training documents (ties: the term, alphabetically),
  of those in at least ``min_df`` documents; term id = position + 1, id :data:`PAD_ID` 0 pads;
* weight: ``tf × idf`` with ``tf = 1 + ln(count)`` (sublinear) or the count, and the smooth idf
  ``ln((1 + n) / (1 + df)) + 1`` of the training set (scikit-learn's); terms outside the
  vocabulary are dropped, then the row is scaled to unit L2 norm (an empty row stays zero);
* a batch is two arrays of one shape ``(rows, length)``: ``terms`` (int32) and ``weights``
  (float32), each row's terms in increasing id order, padded with id 0 at weight 0.

NumPy only, like ``service.contract.vectorize``: cheap to import in the serving process.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.contract.vectorize import TOKENIZER, tokenize

KIND = "tfidf-bag"
PAD_ID = 0
VOCABULARY_FILE = "vocabulary.json"


def terms_of(text: str, ngram_max: int = 2) -> list[str]:
    """Every term occurrence of a text: its words, then its word pairs (and so on to ``ngram_max``)."""
    return ngrams(tokenize(text), ngram_max)


def ngrams(tokens: Sequence[str], ngram_max: int = 2) -> list[str]:
    """A token list's terms: the tokens, then the runs of 2 to ``ngram_max`` joined by a space."""
    terms = list(tokens)
    for n in range(2, ngram_max + 1):
        terms += map(" ".join, zip(*(tokens[i:] for i in range(n))))
    return terms


@dataclass(frozen=True)
class Bag:
    """A batch as the network reads it: term ids and their weights, one padded row per text."""

    terms: np.ndarray
    weights: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        """The network's two named inputs."""
        return {"terms": self.terms, "weights": self.weights}


class TfidfBag:
    """A fitted vocabulary with its idf weights; ``encode`` turns texts into ``Bag``s."""

    def __init__(self, terms: Sequence[str], idf: Sequence[float], ngram_max: int = 2,
                 sublinear_tf: bool = True, documents: int = 0) -> None:  # fmt: skip
        if len(terms) != len(idf):
            raise ValueError(f"{len(terms)} terms but {len(idf)} idf weights")
        if len(set(terms)) != len(terms):
            raise ValueError("the vocabulary repeats a term")
        self.terms = list(terms)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.ngram_max = ngram_max
        self.sublinear_tf = sublinear_tf
        self.documents = documents
        self._ids = {term: i for i, term in enumerate(self.terms, start=1)}

    @property
    def size(self) -> int:
        """Term ids run from 1 to ``size``; the network's embedding has ``size + 1`` rows."""
        return len(self.terms)

    @classmethod
    def fit(cls, texts: Iterable[str], size: int, ngram_max: int = 2, sublinear_tf: bool = True,
            min_df: int = 2) -> TfidfBag:  # fmt: skip
        """The vocabulary and idf of a training set (never the test set)."""
        df: Counter[str] = Counter()
        documents = 0
        for text in texts:
            df.update(set(terms_of(text, ngram_max)))
            documents += 1
        kept = [(count, term) for term, count in df.items() if count >= min_df]
        kept.sort(key=lambda pair: (-pair[0], pair[1]))
        chosen = kept[:size]
        idf = [math.log((1 + documents) / (1 + count)) + 1 for count, _ in chosen]
        return cls([term for _, term in chosen], idf, ngram_max, sublinear_tf, documents)

    def weigh(self, text: str) -> tuple[np.ndarray, np.ndarray, int, int]:
        """One text's term ids (increasing), their TF-IDF weights before normalisation, and how
        many of its words are not vocabulary terms (dropped; the signals and explanations count
        them)."""
        tokens = tokenize(text)
        words = list(map(self._ids.get, tokens))
        longer = map(self._ids.get, ngrams(tokens, self.ngram_max)[len(tokens) :])
        # term ids are 1 and up: filter(None, ...) drops exactly the terms outside the vocabulary
        found = np.fromiter(filter(None, chain(words, longer)), dtype=np.int32)
        terms, counts = np.unique(found, return_counts=True)
        tf = counts.astype(np.float64)
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        return terms, tf * self.idf[terms - 1] if len(terms) else tf, len(tokens), words.count(None)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """One text's term ids (increasing) and L2-normalised TF-IDF weights."""
        terms, weights, _, _ = self.weigh(text)
        return terms, normalized(weights)

    def encode(self, texts: Sequence[str], length: int | None = None) -> Bag:
        """Texts → one padded ``Bag`` (``length`` at least the longest row; default just that)."""
        return pad([self.row(text) for text in texts], length)

    def card(self) -> dict[str, Any]:
        """The card's ``preprocessing``: every rule a reader needs to rebuild the rows."""
        return {
            "kind": KIND, "tokenizer": TOKENIZER, "ngram_range": [1, self.ngram_max],
            "vocabulary_file": VOCABULARY_FILE, "vocabulary_size": self.size, "pad_id": PAD_ID,
            "tf": "1 + ln(count)" if self.sublinear_tf else "count",
            "idf": "ln((1 + n) / (1 + df)) + 1, on the training texts", "norm": "l2",
            "training_documents": self.documents, "inputs": ["terms", "weights"],
        }  # fmt: skip

    def to_json(self) -> str:
        """The vocabulary file: terms in id order and their idf (JSON keeps floats exactly)."""
        return json.dumps(
            {"ngram_max": self.ngram_max, "sublinear_tf": self.sublinear_tf,
             "documents": self.documents, "terms": self.terms, "idf": self.idf.tolist()},
            ensure_ascii=False,
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> TfidfBag:
        data = json.loads(text)
        return cls(data["terms"], data["idf"], int(data["ngram_max"]), bool(data["sublinear_tf"]),
                   int(data.get("documents", 0)))  # fmt: skip

    @classmethod
    def read(cls, folder: Path, card_preprocessing: dict[str, Any]) -> TfidfBag:
        """The vocabulary file a card names, checked against the card's own figures."""
        name = card_preprocessing.get("vocabulary_file", VOCABULARY_FILE)
        if not isinstance(name, str) or Path(name).name != name:
            raise ValueError(f"vocabulary_file must be a file name in the folder, got {name!r}")
        bag = cls.from_json((folder / name).read_text(encoding="utf-8"))
        if bag.size != card_preprocessing.get("vocabulary_size"):
            raise ValueError(f"{name} holds {bag.size} terms, the card says "
                             f"{card_preprocessing.get('vocabulary_size')}")  # fmt: skip
        if card_preprocessing.get("ngram_range") != [1, bag.ngram_max]:
            raise ValueError(f"{name} has n-grams up to {bag.ngram_max}, the card says "
                             f"{card_preprocessing.get('ngram_range')}")  # fmt: skip
        return bag

    def term(self, term_id: int) -> str:
        """The term behind an id (explanations name terms, not ids)."""
        return self.terms[term_id - 1]


def normalized(weights: np.ndarray) -> np.ndarray:
    """Weights scaled to unit L2 norm, as float32 (all zero stays all zero)."""
    norm = float(np.sqrt(np.dot(weights, weights)))
    return (weights / norm if norm > 0 else weights).astype(np.float32)


def pad(rows: Sequence[tuple[np.ndarray, np.ndarray]], length: int | None = None) -> Bag:
    """Rows of (ids, weights) → one ``Bag`` padded with id 0 at weight 0 (at least one column,
    so an empty text is a row of padding and the network answers its bias alone)."""
    width = max([1, *(len(ids) for ids, _ in rows)]) if length is None else length
    terms = np.zeros((len(rows), width), dtype=np.int32)
    weights = np.zeros((len(rows), width), dtype=np.float32)
    for i, (ids, values) in enumerate(rows):
        terms[i, : len(ids)] = ids
        weights[i, : len(values)] = values
    return Bag(terms, weights)
