"""The raw texts of the IMDB and Reuters splits, in the Keras datasets' own order.

Version-2 text models are trained and scored on raw text (the book's models on Keras' word-id
sequences, which the raw texts reproduce exactly: ``tests/test_parity.py``). The splits are the
Keras ones: IMDB's 25,000 / 25,000 reviews shuffled as ``imdb.load_data`` shuffles them,
Reuters' 8,982 / 2,246 newswires of ``reuters.load_data`` (seed 113, test split 0.2), so a
version-1 and a version-2 figure are measured on the same documents.

The raw files sit beside the Keras files in the project's offline data
(``<data>/keras/`` for the Keras files, ``<data>/imdb/`` for the review archives): they are
looked for in the data folder, then in its parent's ``imdb/`` and ``keras/`` folders, and their
sha256 is checked (and recorded on the card, as for the Keras files).
"""

from __future__ import annotations

import gzip
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.contract.artifacts import sha256_file
from training.datasets import SEED, DataError, DataSource

RAW_FILES = {
    "aclImdb_train.tar.gz": ("imdb", "7506424b5c91070984a4986a213a7cc832a11f3af6c6ca87ef8f3e1a25d296b8"),
    "aclImdb_test.tar.gz": ("imdb", "dc2e6021deec7518c2ece414f4466ddd6e5758bfb29c6a713e6a8333f01881e8"),
    "reuters46_texts_keras_order.jsonl.gz": (
        "keras", "b0d046b29360cdd89b231d0ed253c76a9219ab4f90a80c86475469f2aadf240f",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class TextSplit:
    """Raw training and test texts with their labels (IMDB: float 0/1; Reuters: int 0–45)."""

    x_train: list[str]
    y_train: np.ndarray
    x_test: list[str]
    y_test: np.ndarray
    how: dict[str, float | int | str] = field(default_factory=dict)


def raw_path(source: DataSource, name: str) -> Path:
    """The checked path of a raw-text file, recorded in ``source.used``."""
    folder, sha256 = RAW_FILES[name]
    roots = [Path(root) for root in source.folders()]
    candidates = [c for root in roots for c in (root / name, root.parent / folder / name)]
    for candidate in candidates:
        if candidate.is_file():
            found = sha256_file(candidate)
            if found != sha256:
                raise DataError(f"{candidate} is not the known {name} (sha256 {found[:16]}…)")
            source.used[name] = found
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"{name} was not found (looked in: {looked}); pass --data-dir the folder of "
                    f"the Keras files, with the raw texts beside it (see the data README)")  # fmt: skip


def _imdb_archive(path: Path) -> tuple[list[str], np.ndarray]:
    """One aclImdb archive in imdb.npz's order: sorted positive file names, then negative."""
    with tarfile.open(path) as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        pos = sorted(n for n in members if "/pos/" in n)
        neg = sorted(n for n in members if "/neg/" in n)
        texts = [archive.extractfile(members[n]).read().decode("utf-8") for n in pos + neg]  # type: ignore[union-attr]
    return texts, np.array([1.0] * len(pos) + [0.0] * len(neg), dtype="float32")


def load_imdb_texts(source: DataSource, seed: int = SEED) -> TextSplit:
    """The raw reviews, shuffled exactly as ``training.datasets.load_imdb`` shuffles the ids."""
    x_train, y_train = _imdb_archive(raw_path(source, "aclImdb_train.tar.gz"))
    x_test, y_test = _imdb_archive(raw_path(source, "aclImdb_test.tar.gz"))
    rng = np.random.RandomState(seed)
    train_order = np.arange(len(x_train))
    rng.shuffle(train_order)
    test_order = np.arange(len(x_test))
    rng.shuffle(test_order)
    return TextSplit(
        [x_train[i] for i in train_order], y_train[train_order],
        [x_test[i] for i in test_order], y_test[test_order],
        {"seed": seed, "order": "imdb.load_data's shuffle of the aclImdb texts"},
    )  # fmt: skip


def load_reuters_texts(source: DataSource) -> TextSplit:
    """The raw newswires of Keras' split, each split in Keras' order."""
    with gzip.open(raw_path(source, "reuters46_texts_keras_order.jsonl.gz"), "rt") as lines:
        rows = [json.loads(line) for line in lines]
    split = {
        part: sorted((r for r in rows if r["keras_split"] == part), key=lambda r: r["keras_pos"])
        for part in ("train", "test")
    }
    return TextSplit(
        [r["text"] for r in split["train"]], np.array([r["label"] for r in split["train"]], "int64"),
        [r["text"] for r in split["test"]], np.array([r["label"] for r in split["test"]], "int64"),
        {"seed": SEED, "test_split": 0.2, "order": "reuters.load_data's split"},
    )  # fmt: skip


def dense_batch(x: dict[str, Any], y: Any) -> tuple[dict[str, Any], Any]:
    """A ragged ``tf.data`` batch of bag rows padded to its longest row (``to_tensor`` pads with
    0: term id 0 at weight 0). Kept out of autograph and out of ``training.tfidf_networks``:
    autograph converts a mapped function from its source file, so editing that file under a
    running experiment would hand it another function's source."""
    return {name: values.to_tensor() for name, values in x.items()}, y
