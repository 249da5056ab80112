"""Exact explanations, cheap because of what these networks read.

A text model reads a set of words (a multi-hot row), so the effect of a word is exactly the
prediction minus the prediction with that word removed: one extra row per distinct word, all in
one batched call. Boston's effect of a feature is the price minus the price with that feature
at its training mean: one extra row per feature, one call. No sampling, no approximation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from service.registry import ServedModel
from service.schemas import FeatureEffect, TextExplanation, WordEffect
from service.vectorize import OOV_ID, START_ID, hot_positions

Score = Callable[[np.ndarray], np.ndarray]
"""Picks, from a batch of model outputs, the number being explained (one per row)."""


def explain_words(
    served: ServedModel, sequence: Sequence[int], unknown_words: int, score: Score, top: int
) -> TextExplanation:
    """Each word's effect on ``score``: the input row, then the row without each word, one call."""
    assert served.word_index is not None
    positions = hot_positions(sequence, served.word_index.num_words)
    words = positions[(positions != START_ID) & (positions != OOV_ID)]
    rows = [positions, *(positions[positions != word] for word in words)]
    scores = score(served.predict_positions(rows))
    effects = scores[0] - scores[1:]
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    return TextExplanation(
        words=[
            WordEffect(word=served.word_index.word(int(words[i])), effect=float(effects[i]))
            for i in order
        ],
        unknown_words=unknown_words,
    )


def unknown_in_sequence(sequence: Sequence[int], num_words: int) -> int:
    """Ids of a Keras sequence that reach the model only as 'out of vocabulary'."""
    return sum(1 for i in sequence if i == OOV_ID or i >= num_words)


def explain_features(served: ServedModel, row: Sequence[float]) -> list[FeatureEffect]:
    """Each feature's effect on the price: the row, then the row with each feature at its mean."""
    means = np.array([feature["train_mean"] for feature in served.features], dtype=np.float32)
    base = np.asarray(row, dtype=np.float32)
    rows = np.repeat(base[None, :], len(base) + 1, axis=0)
    rows[1:][np.diag_indices(len(base))] = means
    prices = served.predict(rows)[:, 0]
    effects = prices[0] - prices[1:]
    names = [feature["name"] for feature in served.features]
    return [
        FeatureEffect(feature=names[i], value=float(row[i]), effect=float(effects[i]))
        for i in np.argsort(-np.abs(effects), kind="stable")
    ]
