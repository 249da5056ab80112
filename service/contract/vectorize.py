"""Text → Keras word ids → multi-hot: the one preprocessing module shared by training and serving.

Training (``training/``) and the service (``service/``) both import this module, so a review is
turned into the model's input in exactly one way. It depends on NumPy only (no Keras, no
TensorFlow), which keeps it cheap to import in the serving process.

The rules reproduce how the Keras IMDB and Reuters datasets were built (a 2015 Keras
``Tokenizer`` running on Python 2 byte strings):

* lowercase **ASCII letters only**: Python 2's ``str.lower`` on bytes left other letters alone,
  which is why the IMDB word index holds keys such as ``"Ángela"``; Unicode ``str.lower`` would
  turn them into words that are not in the index (5 of the 25,000 IMDB test reviews differ);
* the characters of :data:`FILTERS` (punctuation, tab and newline) become spaces, so ``<br />``
  yields the word ``br``;
* split on the space character only, dropping empty pieces: ``\\r``, ``\\xa0`` and ``\\x85`` stay
  inside words, as they did in the index (splitting on all white space changes 334 test reviews);
* a word's id is its rank in the dataset's word index plus :data:`INDEX_FROM`; ids at or past
  ``num_words`` become :data:`OOV_ID`; words missing from the index are dropped; every sequence
  starts with :data:`START_ID`.

With these rules, the raw texts of all 25,000 IMDB test reviews and all 11,228 Reuters
newswires give exactly the Keras sequences (see ``tests/test_parity.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
"""Characters the Keras ``Tokenizer`` turns into spaces (its default ``filters``)."""

PAD_ID = 0
START_ID = 1
OOV_ID = 2
INDEX_FROM = 3
"""Keras' ``index_from``: word ids are ``rank + 3``, below which sit pad (0), start (1), OOV (2)."""

NUM_WORDS = 10_000
"""The recipes keep the 10,000 most frequent words: ids at or past this become ``OOV_ID``."""

TOKENIZER = "service.vectorize.tokenize"
"""The name every card records for :func:`tokenize` (``preprocessing.tokenizer``): the function's
path when the first cards were written, before it moved into ``service.contract``. A name, not
an import path; kept so that every card, old and new, names the same tokenizer the same way."""

_TO_SPACE_AND_ASCII_LOWER = str.maketrans(
    {**{c: " " for c in FILTERS}, **{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)}}
)


def tokenize(text: str) -> list[str]:
    """Split raw text into the words the Keras datasets were built from."""
    return list(filter(None, text.translate(_TO_SPACE_AND_ASCII_LOWER).split(" ")))


class WordIndex:
    """A dataset's word index (word → frequency rank, 1 = most frequent), capped at ``num_words``.

    Built once per model at start-up; ``encode`` is then one dict lookup per word.
    """

    def __init__(self, word_index: Mapping[str, int], num_words: int = NUM_WORDS) -> None:
        if num_words <= INDEX_FROM:
            raise ValueError(f"num_words must be greater than {INDEX_FROM}, got {num_words}")
        self.num_words = num_words
        self._ids: dict[str, int] = {
            word: capped_id(rank + INDEX_FROM, num_words) for word, rank in word_index.items()
        }
        self._words: dict[int, str] = {i: word for word, i in self._ids.items() if i != OOV_ID}

    def encode(self, text: str) -> list[int]:
        """Raw text → Keras word-id sequence (start id first, OOV capped, unknown words dropped)."""
        ids = self._ids
        return [START_ID, *(ids[word] for word in tokenize(text) if word in ids)]

    def encode_counting_unknown(self, text: str) -> tuple[list[int], int]:
        """``encode``, plus how many words never reach the model as themselves (dropped or OOV),
        from one tokenization (explanations report that count)."""
        ids, sequence, unknown = self._ids, [START_ID], 0
        for word in tokenize(text):
            word_id = ids.get(word)
            if word_id is not None:
                sequence.append(word_id)
            if word_id is None or word_id == OOV_ID:
                unknown += 1
        return sequence, unknown

    def read(self, text: str) -> tuple[np.ndarray, int, int]:
        """Raw text → its multi-hot row's 1-positions (sorted), its words, and how many of them
        never reach the model as themselves (dropped or OOV), in one pass: what the server needs
        per text. The positions are ``hot_positions(encode(text))``, found with a set instead of
        ``np.union1d`` over the whole sequence; for a 235-word review, 31 µs instead of 64 µs
        (measured in process; ``tests/test_parity.py`` checks the equality on every raw test
        text)."""
        tokens = tokenize(text)
        found = list(map(self._ids.get, tokens))
        unknown = found.count(None) + found.count(OOV_ID)
        present = set(found)
        present.discard(None)
        present.add(START_ID)
        positions = np.fromiter(present, dtype=np.int64, count=len(present))
        positions.sort()
        return positions, len(tokens), unknown

    def word(self, word_id: int) -> str:
        """The word behind an id below ``num_words`` (explanations name words, not ids)."""
        return self._words[word_id]


def capped_id(word_id: int, num_words: int = NUM_WORDS) -> int:
    """Keras' ``num_words`` cut: ids at or past ``num_words`` become the OOV id."""
    return word_id if word_id < num_words else OOV_ID


def hot_positions(sequence: Sequence[int], num_words: int = NUM_WORDS) -> np.ndarray:
    """The sorted positions a Keras word-id sequence sets to 1 in its multi-hot row.

    This is the book's ``vectorize_sequences`` for one row, with three serving rules made
    explicit, none of which changes a Keras dataset row: ids at or past ``num_words`` count as
    OOV (Keras' ``load_data(num_words=...)`` cut), the padding id 0 is ignored (no training row
    held it), and the start id is always set (every training row began with it).
    """
    ids = np.asarray(sequence, dtype=np.int64)
    if ids.size and ids.min() < PAD_ID:
        raise ValueError("word ids must not be negative")
    ids = np.where(ids >= num_words, OOV_ID, ids)
    return np.union1d(ids[ids > PAD_ID], [START_ID])


def multi_hot(sequences: Iterable[Sequence[int]], num_words: int = NUM_WORDS) -> np.ndarray:
    """Keras word-id sequences → float32 matrix of shape ``(n, num_words)``, 1 where an id occurs."""
    positions = [hot_positions(sequence, num_words) for sequence in sequences]
    return rows_from_positions(positions, num_words)


def rows_from_positions(positions: Sequence[np.ndarray], num_words: int = NUM_WORDS) -> np.ndarray:
    """Multi-hot float32 rows of width ``num_words`` from their 1-positions: what training
    feeds the network, and what the runtimes build, a chunk at a time, to serve it."""
    rows = np.zeros((len(positions), num_words), dtype=np.float32)
    for row, hot in zip(rows, positions):
        row[hot] = 1.0
    return rows
