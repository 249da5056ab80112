"""The three Keras datasets, loaded with Keras' own split semantics from a folder we can name.

``keras.datasets.*.load_data()`` only reads its download cache and fetches what is missing. We
need more: an explicit data folder (machines without internet), and the reconstructed IMDB and
Reuters files whose bytes differ from Keras' (Keras' hash check refuses them). So the files are
found here, checked against the hashes we know, and then split exactly as Keras does
(``np.random.RandomState(113)`` shuffles, start id 1, ``index_from=3``, OOV id 2, the
``num_words`` cut, ``test_split=0.2``); ``tests/test_datasets.py`` checks the published rows.

Where each file is looked for, in order: ``--data-dir`` (or ``$TRAINING_DATA_DIR``), the Keras
cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``), then Keras' download.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.contract.artifacts import sha256_file
from service.contract.vectorize import INDEX_FROM, NUM_WORDS, OOV_ID, START_ID

SEED = 113
TEST_SPLIT = 0.2
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DATA_DIR_VARIABLE = "TRAINING_DATA_DIR"


@dataclass(frozen=True)
class DataFile:
    """A dataset file and the digests we accept for it (Keras' own, and our rebuilt copy's)."""

    name: str
    keras_hash: str
    """The ``file_hash`` Keras' own loader passes to ``get_file``: what a download must match."""
    sha256: tuple[str, ...] = ()
    md5: tuple[str, ...] = ()


FILES = {
    "imdb.npz": DataFile(
        "imdb.npz",
        "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
        sha256=(
            "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",  # Keras
            "6814c0beea01878740d178d45caaf84fa878f5f452bd5f6bb6b5e3add8655f32",  # rebuilt
        ),
    ),
    "imdb_word_index.json": DataFile(
        "imdb_word_index.json",
        "bfafd718b763782e994055a2d397834f",
        sha256=("027313fe9a320280f3bf0fac5baf58c4a683cf39a7ed9c3d3d3912bde4284cf6",),
        md5=("bfafd718b763782e994055a2d397834f",),
    ),
    "reuters.npz": DataFile(
        "reuters.npz",
        "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916",
        sha256=(
            "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916",  # Keras
            "8c1255c498914fa00e37f1820ec96e290f5a247b63a858ac7b24ca809504e13a",  # rebuilt
        ),
    ),
    "reuters_word_index.json": DataFile(
        "reuters_word_index.json",
        "4d44cc38712099c9e383dc6e5f11a921",
        sha256=("685a7fac87c6d48e00bcdaff2f51635d71b5be48bdf35a8afb4cdbcf54f7bf80",),  # rebuilt
        md5=("4d44cc38712099c9e383dc6e5f11a921",),  # Keras
    ),
    "boston_housing.npz": DataFile(
        "boston_housing.npz",
        "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",
        sha256=("f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",),
    ),
}


class DataError(Exception):
    """A dataset file that is missing, not the one we know, or unusable; the message says what to do."""


@dataclass
class DataSource:
    """Where to look for dataset files, and the sha256 of every file actually used."""

    data_dir: Path | str | None = None
    used: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).expanduser()

    @classmethod
    def from_environment(cls, data_dir: str | Path | None = None) -> DataSource:
        return cls(data_dir or os.environ.get(DATA_DIR_VARIABLE) or None)

    def folders(self) -> list[Path]:
        return [folder for folder in (self.data_dir, keras_cache()) if folder]

    def path(self, name: str) -> Path:
        """The checked local path of a dataset file, downloading it through Keras if we may."""
        spec = FILES[name]
        for folder in self.folders():
            candidate = folder / name
            if candidate.is_file():
                self.used[name] = _check(candidate, spec)
                return candidate
        downloaded = _download(spec, self.folders())
        self.used[name] = _check(downloaded, spec)
        return downloaded


def keras_cache() -> Path:
    """Keras' download cache: ``$KERAS_HOME/datasets``, by default ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def _md5_file(path: Path) -> str:
    """Hex md5 of a file: Keras names two of its word indexes by md5, so we must accept those."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "md5").hexdigest()


def _check(path: Path, spec: DataFile) -> str:
    sha256 = sha256_file(path)
    if sha256 in spec.sha256 or (spec.md5 and _md5_file(path) in spec.md5):
        return sha256
    raise DataError(
        f"{path} is not a known copy of {spec.name} (sha256 {sha256[:16]}…): it may be truncated "
        f"or corrupt. Delete it and put a good copy there (Keras' own download, or the offline "
        f"copies listed in the data README)."
    )


def _download(spec: DataFile, folders: list[Path]) -> Path:
    looked = ", ".join(str(folder / spec.name) for folder in folders)
    hint = (
        f"{spec.name} was not found (looked in: {looked}). Put the file in a folder and pass "
        f"--data-dir FOLDER (or set {DATA_DIR_VARIABLE}), or copy it into {keras_cache()}/."
    )
    try:
        import keras

        fetched = keras.utils.get_file(
            spec.name, origin=KERAS_ORIGIN + spec.name, file_hash=spec.keras_hash
        )
    except Exception as error:  # noqa: BLE001 - no network, refused hash, disk full: one clear message
        raise DataError(f"{hint} Downloading it from Keras failed too: {error}") from None
    return Path(fetched)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    # The rebuilt files hold object arrays of lists (as Keras' own do), hence allow_pickle;
    # these are checked dataset files, never anything a request can name.
    with np.load(path, allow_pickle=True) as data:
        return {key: data[key] for key in data.files}


def keras_sequences(raw: np.ndarray, num_words: int) -> list[list[int]]:
    """Keras' ``load_data`` rule: start id, ranks shifted by ``index_from``, the OOV cut."""
    return [
        [START_ID, *(w + INDEX_FROM if w + INDEX_FROM < num_words else OOV_ID for w in row)]
        for row in raw
    ]


@dataclass(frozen=True)
class Split:
    x_train: list[list[int]] | np.ndarray
    y_train: np.ndarray
    x_test: list[list[int]] | np.ndarray
    y_test: np.ndarray
    how: dict[str, float | int] = field(default_factory=dict)
    """How the rows were split (Keras' shuffle seed, the test fraction), for the model card."""


def load_imdb(source: DataSource, num_words: int = NUM_WORDS, seed: int = SEED) -> Split:
    """``keras.datasets.imdb.load_data(num_words=...)``: 25,000 train and 25,000 test reviews."""
    data = load_npz(source.path("imdb.npz"))
    rng = np.random.RandomState(seed)
    train_order = np.arange(len(data["x_train"]))
    rng.shuffle(train_order)
    test_order = np.arange(len(data["x_test"]))
    rng.shuffle(test_order)
    return Split(
        keras_sequences(data["x_train"][train_order], num_words),
        data["y_train"][train_order].astype("float32"),
        keras_sequences(data["x_test"][test_order], num_words),
        data["y_test"][test_order].astype("float32"),
        {"seed": seed},
    )


def load_reuters(source: DataSource, num_words: int = NUM_WORDS, seed: int = SEED) -> Split:
    """``keras.datasets.reuters.load_data(num_words=...)``: 8,982 train, 2,246 test newswires."""
    data = load_npz(source.path("reuters.npz"))
    order = np.arange(len(data["x"]))
    np.random.RandomState(seed).shuffle(order)
    sequences = keras_sequences(data["x"][order], num_words)
    labels = data["y"][order].astype("int64")
    cut = int(len(sequences) * (1 - TEST_SPLIT))
    how = {"seed": seed, "test_split": TEST_SPLIT}
    return Split(sequences[:cut], labels[:cut], sequences[cut:], labels[cut:], how)


def load_boston(source: DataSource, seed: int = SEED) -> Split:
    """``keras.datasets.boston_housing.load_data()``: 404 train and 102 test rows of 13 features."""
    data = load_npz(source.path("boston_housing.npz"))
    order = np.arange(len(data["x"]))
    np.random.RandomState(seed).shuffle(order)
    x, y = data["x"][order], data["y"][order]
    cut = int(len(x) * (1 - TEST_SPLIT))
    return Split(x[:cut], y[:cut], x[cut:], y[cut:], {"seed": seed, "test_split": TEST_SPLIT})


@dataclass(frozen=True)
class Column:
    """One column of a table as a model card describes it: its name, meaning and unit."""

    name: str
    description: str
    unit: str


BOSTON_FEATURES = (
    Column("CRIM", "per-capita crime rate by town", "crimes per capita"),
    Column("ZN", "share of residential land zoned for lots over 25,000 sq ft (%)", "%"),
    Column("INDUS", "share of non-retail business acres per town (%)", "%"),
    Column("CHAS", "1 if the tract bounds the Charles River, else 0", "0 or 1"),
    Column("NOX", "nitric oxides concentration (parts per 10 million)", "parts per 10 million"),
    Column("RM", "average number of rooms per dwelling", "rooms"),
    Column("AGE", "share of owner-occupied units built before 1940 (%)", "%"),
    Column("DIS", "weighted distance to five Boston employment centres", "weighted distance (index)"),
    Column("RAD", "index of accessibility to radial highways", "index"),
    Column("TAX", "full-value property-tax rate per $10,000", "dollars per $10,000"),
    Column("PTRATIO", "pupil-teacher ratio by town", "pupils per teacher"),
    Column("B", "1000 (Bk - 0.63)^2, Bk the share of Black residents", "index"),
    Column("LSTAT", "share of lower-status population (%)", "%"),
)
"""The 13 Boston housing features in the order of the dataset's columns (the order the model
reads them). The dataset carries neither names nor units: these are the StatLib description's."""

BOSTON_TARGET = Column("MEDV", "median value of owner-occupied homes", "thousands of dollars")


def load_word_index(source: DataSource, name: str) -> dict[str, int]:
    """The dataset's word index (word → rank), as ``keras.datasets.<name>.get_word_index()``."""
    return json.loads(source.path(f"{name}_word_index.json").read_text(encoding="utf-8"))


def reuters_label_names() -> list[str]:
    """The 46 topic names in class-id order (Keras keeps them in its source, no download)."""
    import keras

    return list(keras.datasets.reuters.get_label_names())
