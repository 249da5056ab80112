"""``python -m training fit text|table``: a model fitted on the user's own CSV or JSON Lines file.

``check_text`` and ``check_table`` read and check the whole file (and the ``--test`` file) before
TensorFlow is imported or anything is written: bad data costs a fraction of a second, leaves no
folder behind, and gets one message naming the file, the line, the column and the value. They
return a :class:`Plan`; :func:`fit` then

1. chooses the number of epochs: a seeded 20 % of the training rows is held out for validation,
   and the network is fitted on the rest until the validation loss has not improved for a few
   epochs; the fewest epochs that (nearly) reached the lowest validation loss are kept;
2. refits the network from scratch, with the same seed, on all the training rows for that many
   epochs;
3. computes the test figures in float64 NumPy from the model's predictions on exactly the input
   the service builds from the same rows (for text: the raw texts through ``service.contract.vectorize``),
   so a client scoring those rows through the API gets the same figures. The test rows are the
   ``--test`` file, or else a seeded 20 % of the data never used for training; the card says which;
4. writes the version folder as the book's models are written (``export.write_version``).

Nothing here knows a model by name: the columns, labels and vocabulary all come from the data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from service.contract.artifacts import MODEL_NAME, RESERVED_NAMES, sha256_file
from service.contract.vectorize import INDEX_FROM, NUM_WORDS, WordIndex, tokenize
from training.cards import TableRegressorCard, TextClassifierCard
from training.datasets import Column, DataError
from training.export import card_heading, next_version, write_version
from training.networks import (
    compile_regressor,
    dense_stack,
    describe,
    history_of,
    normalized_regressor,
    seed_everything,
)

if TYPE_CHECKING:
    import keras

TEST_FRACTION = 0.2
"""Without ``--test``, this share of the data is held out for the test figures."""
VALIDATION_FRACTION = 0.2
"""This share of the training rows chooses the number of epochs."""
MIN_TRAINING_ROWS = 10
STEPS_PER_EPOCH = 32
"""Batches grow with the data (from 32 to the book's 512 rows) to keep about this many steps an
epoch: a fit on a few thousand rows then takes seconds, not minutes, on two cores."""


# --- Reading a file ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """A data file as read: its column names, and each row's values with the line it starts on."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]


def read_rows(path: Path) -> Rows:
    """A ``.csv`` file (header first) or a ``.jsonl`` / ``.ndjson`` file (one object per line)."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}: give a .csv "
            f"file with a header line, or a .jsonl / .ndjson file with one JSON object per line"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line} is not UTF-8 text (byte 0x{error.object[error.start]:02x}): "
            f"save the file as UTF-8"
        ) from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror}") from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    rows = reader(path, text)
    if not rows.rows:
        raise DataError(f"{path} has a header but no rows")
    return rows


def _read_csv(path: Path, text: str) -> Rows:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        _check_header(path, header)
        rows, end = [], reader.line_num
        for fields in reader:
            line, end = end + 1, reader.line_num
            if not fields:
                continue  # a blank line
            if len(fields) != len(header):
                raise DataError(
                    f"{path} line {line}: {len(fields)} fields where the header has {len(header)}"
                )
            rows.append((line, dict(zip(header, fields))))
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV: {error}") from None
    return Rows(path, header, rows)


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise DataError(f"{path}: the first line, the header, is blank")
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(f"{path}: column {position} of the header has no name")
        if header.index(name) != position - 1:
            raise DataError(f"{path}: the header names {name!r} twice")


def _read_json_lines(path: Path, text: str) -> Rows:
    rows = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            value = json.loads(content, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path} line {line} is not valid JSON: {error.msg} (column {error.colno})"
            ) from None
        except ValueError as error:  # a key named twice
            raise DataError(f"{path} line {line}: {error}") from None
        if not isinstance(value, dict):
            raise DataError(f"{path} line {line} is {_json_kind(value)}, not a JSON object")
        rows.append((line, value))
    return Rows(path, list(rows[0][1]), rows)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` keeps the last of two equal keys; a data row must not be that ambiguous."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ValueError(f"the object names {name!r} twice")
        seen.add(name)
    return dict(pairs)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
             int: "a number", float: "a number", type(None): "null"}  # fmt: skip
    return kinds[type(value)]


READERS: dict[str, Callable[[Path, str], Rows]] = {
    ".csv": _read_csv, ".jsonl": _read_json_lines, ".ndjson": _read_json_lines,
}  # fmt: skip


# --- Rows to examples ----------------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """Rows as a model learns from them: inputs ``x`` (raw texts, or a float64 matrix of
    features), targets ``y`` (labels as strings, or float64 numbers), and each row's line."""

    x: Sequence[str] | np.ndarray
    y: Sequence[str] | np.ndarray
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    def take(self, rows: np.ndarray) -> Examples:
        return Examples(_take(self.x, rows), _take(self.y, rows), [self.lines[i] for i in rows])


def _take(values: Sequence[str] | np.ndarray, rows: np.ndarray) -> Sequence[str] | np.ndarray:
    return values[rows] if isinstance(values, np.ndarray) else [values[i] for i in rows]


def text_examples(rows: Rows, text_column: str, label_column: str) -> Examples:
    """Each row's raw text and its label as a string; an empty text or label is an error."""
    if text_column == label_column:
        raise DataError(f"the text and the label column are both {text_column!r}: they must differ")
    _require_columns(rows, [text_column, label_column])
    texts, labels = [], []
    for line, row in rows.rows:
        text = _cell(rows.path, line, row, text_column)
        if text is None or (isinstance(text, str) and not text.strip()):
            raise DataError(f"{rows.path} line {line}: the text in {text_column!r} is empty")
        if not isinstance(text, str):
            raise DataError(
                f"{rows.path} line {line}: the text in {text_column!r} is {_json_kind(text)}, "
                f"not a string"
            )
        texts.append(text)
        labels.append(_label(rows.path, line, label_column, _cell(rows.path, line, row, label_column)))
    return Examples(texts, labels, [line for line, _ in rows.rows])


def _label(path: Path, line: int, column: str, value: Any) -> str:
    """A label as the service will name it: strings as they are, JSON numbers and booleans as
    JSON writes them (``1``, ``true``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{path} line {line}: the label in {column!r} is empty")
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise DataError(f"{path} line {line}: the label in {column!r} is {_json_kind(value)}, "
                    f"not a string or a number")  # fmt: skip


def table_examples(rows: Rows, features: Sequence[str], target: str) -> Examples:
    """Each row's features and target as finite float64 numbers, the features in that order."""
    wanted = [*features, target]
    _require_columns(rows, wanted)
    x = np.empty((len(rows.rows), len(features)), dtype="float64")
    y = np.empty(len(rows.rows), dtype="float64")
    for i, (line, row) in enumerate(rows.rows):
        unexpected = [name for name in row if name not in wanted]
        if unexpected:
            raise DataError(
                f"{rows.path} line {line}: unexpected column {unexpected[0]!r} "
                f"(the columns are {_listed(wanted)})"
            )
        for j, name in enumerate(features):
            x[i, j] = _number(rows.path, line, name, _cell(rows.path, line, row, name))
        y[i] = _number(rows.path, line, target, _cell(rows.path, line, row, target))
    return Examples(x, y, [line for line, _ in rows.rows])


def _number(path: Path, line: int, column: str, value: Any) -> float:
    """A finite number: a JSON number, or text that reads as one (CSV holds only text)."""
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number; an integer past float's range
            pass
    if not math.isfinite(number):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
        raise DataError(f"{path} line {line}: {column!r} is not a finite number: {shown!r}")
    return number


def _require_columns(rows: Rows, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in rows.columns:
            raise DataError(
                f"{rows.path} has no column {column!r} (its columns: {_listed(rows.columns)})"
            )


def _cell(path: Path, line: int, row: dict[str, Any], column: str) -> Any:
    if column not in row:
        raise DataError(f"{path} line {line} has no {column!r}")
    return row[column]


def _listed(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _few(names: Sequence[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


# --- What a fit needs, checked -------------------------------------------------------------


def split_rows(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded: the same rows and seed always give the same ``(kept, held)`` row numbers, each
    in file order; at least one row is held."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, round(count * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


def vocabulary(texts: Sequence[str]) -> dict[str, int]:
    """The words of ``texts`` under the service's tokenizer, ranked 1, 2, … from the most
    frequent (ties alphabetically, so the same texts always give the same index)."""
    counts = Counter(word for text in texts for word in tokenize(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word: rank for rank, (word, _) in enumerate(ranked, start=1)}


@dataclass(frozen=True)
class TextRecipe:
    """The text network: multi-hot → Dense(16, relu) → Dense(16, relu) → Dense(1, sigmoid) for
    two labels (P(labels[1])), or Dense(labels, softmax); rmsprop."""

    output: TextClassifierCard
    max_epochs: ClassVar[int] = 100
    patience: ClassVar[int] = 3
    min_delta: ClassVar[float] = 1e-3
    """Cross-entropy gains smaller than this are noise: stop rather than polish a solved task."""

    @property
    def binary(self) -> bool:
        return len(self.output.labels) == 2

    @property
    def loss(self) -> str:
        return "binary_crossentropy" if self.binary else "sparse_categorical_crossentropy"

    def inputs(self, examples: Examples) -> np.ndarray:
        """Raw texts → the multi-hot rows, encoded exactly as the service encodes a request."""
        words = WordIndex(self.output.word_index, self.output.num_words)
        return self.output.inputs([words.encode(text) for text in examples.x])

    def targets(self, examples: Examples) -> np.ndarray:
        ids = self._label_ids(examples)
        return ids.astype("float32") if self.binary else ids

    def build(self, x_train: np.ndarray) -> keras.Model:
        outputs, final = (1, "sigmoid") if self.binary else (len(self.output.labels), "softmax")
        model = dense_stack(self.output.num_words, [16, 16], outputs, "relu", final, "text")
        model.compile(optimizer="rmsprop", loss=self.loss, metrics=["accuracy"])
        return model

    def figures(self, predicted: np.ndarray, examples: Examples) -> dict[str, float]:
        """Accuracy: two labels predict ``labels[1]`` iff p >= 0.5, more the most probable."""
        p = np.asarray(predicted, dtype="float64")
        chosen = (p[:, 0] >= 0.5).astype("int64") if self.binary else p.argmax(axis=1)
        return {"test_accuracy": round(float(np.mean(chosen == self._label_ids(examples))), 6)}

    def card(self) -> dict[str, Any]:
        return {"optimizer": "rmsprop", "loss": self.loss, "metrics": ["accuracy"]}

    def _label_ids(self, examples: Examples) -> np.ndarray:
        ids = {label: i for i, label in enumerate(self.output.labels)}
        return np.array([ids[label] for label in examples.y], dtype="int64")


@dataclass(frozen=True)
class TableRecipe:
    """The table network: Normalization (inside the model) → Dense(64, relu) → Dense(64, relu) →
    Dense(1); rmsprop, mean squared error."""

    output: TableRegressorCard
    max_epochs: ClassVar[int] = 200
    patience: ClassVar[int] = 10
    min_delta: ClassVar[float] = 0.0
    """The squared error is in the target's units squared: no scale-free threshold, so none."""

    def inputs(self, examples: Examples) -> np.ndarray:
        return self.output.inputs(examples.x)

    def targets(self, examples: Examples) -> np.ndarray:
        return np.asarray(examples.y, dtype="float32")

    def build(self, x_train: np.ndarray) -> keras.Model:
        model = normalized_regressor(x_train, self.output.field, "table")
        compile_regressor(model)
        return model

    def figures(self, predicted: np.ndarray, examples: Examples) -> dict[str, float]:
        error = np.asarray(predicted, dtype="float64")[:, 0] - np.asarray(examples.y, dtype="float64")
        return {"test_mae": round(float(np.mean(np.abs(error))), 6),
                "test_mse": round(float(np.mean(error**2)), 6)}  # fmt: skip

    def card(self) -> dict[str, Any]:
        return {
            "optimizer": "rmsprop", "loss": "mse", "metrics": ["mae"],
            "normalization": "feature-wise (x - mean) / std of the training rows, inside the model",
        }  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A fit whose data has been read and checked: nothing is trained or written yet."""

    name: str
    out: Path
    seed: int
    recipe: TextRecipe | TableRecipe
    train: Examples
    test: Examples
    description: str
    dataset: dict[str, Any]
    evaluation: dict[str, Any]

    def describe(self) -> str:
        return f"fitting a {self.recipe.output.kind} on {len(self.train)} rows (seed {self.seed})"


def check_text(data: Path, text_column: str, label_column: str, name: str, out: Path,
               test: Path | None = None, seed: int = 1) -> Plan:  # fmt: skip
    """Read and check a text classifier's data: labels are the distinct label values, sorted;
    the vocabulary is that of the training texts."""
    _check_destination(name, out)
    examples = text_examples(read_rows(data), text_column, label_column)
    test_examples = text_examples(read_rows(test), text_column, label_column) if test else None
    labels = sorted(set(examples.y))
    if len(labels) < 2:
        raise DataError(f"{data}: every row has the label {labels[0]!r} in {label_column!r}: "
                        f"a classifier needs at least two labels")  # fmt: skip
    train, tested, evaluation = _train_and_test(data, examples, test, test_examples, seed)
    _check_labels_seen(data, train, test, tested)
    word_index = vocabulary(train.x)
    if not word_index:
        raise DataError(f"{data}: the texts in {text_column!r} hold no words")
    output = TextClassifierCard(
        labels, word_index, min(NUM_WORDS, len(word_index) + INDEX_FROM + 1)
    )
    description = (f"The {label_column} of a text, among {len(labels)} labels "
                   f"({_few(labels)}); fitted on {data.name}.")  # fmt: skip
    return Plan(name, out, seed, TextRecipe(output), train, tested, description,
                _dataset(data, test, train, tested), evaluation)  # fmt: skip


def check_table(data: Path, target: str, name: str, out: Path, test: Path | None = None,
                seed: int = 1) -> Plan:  # fmt: skip
    """Read and check a table regressor's data: every column but the target is a feature."""
    _check_destination(name, out)
    rows = read_rows(data)
    _require_columns(rows, [target])
    features = [column for column in rows.columns if column != target]
    if not features:
        raise DataError(f"{data} has no column besides the target {target!r} to predict it from")
    examples = table_examples(rows, features, target)
    test_examples = table_examples(read_rows(test), features, target) if test else None
    train, tested, evaluation = _train_and_test(data, examples, test, test_examples, seed)
    output = TableRegressorCard(
        features=[Column(name, f"column {name!r} of {data.name}", "") for name in features],
        target=Column(target, f"column {target!r} of {data.name}", ""),
    )
    description = (f"The {target} of a row of {len(features)} numbers ({_few(features)}); "
                   f"fitted on {data.name}.")  # fmt: skip
    return Plan(name, out, seed, TableRecipe(output), train, tested, description,
                _dataset(data, test, train, tested), evaluation)  # fmt: skip


def _check_destination(name: str, out: Path) -> None:
    if not MODEL_NAME.fullmatch(name):
        raise DataError(
            f"--name {name!r} is not a safe model name: use 1 to 64 lowercase letters, digits, "
            f"'_' or '-', starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise DataError(f"--name {name!r} is one of the service's own paths; choose another name")
    for folder in (out, out / name):
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder} exists and is not a folder")
    next_version(out / name)  # an ambiguous model folder fails now, not after the training


def _train_and_test(
    data: Path, examples: Examples, test: Path | None, test_examples: Examples | None, seed: int
) -> tuple[Examples, Examples, dict[str, Any]]:
    """The training rows, the test rows, and the card's word on where the test rows come from."""
    if test is not None and test_examples is not None:
        train, tested = examples, test_examples
        evaluation = {"on": "test file", "file": test.name, "rows": len(tested)}
    else:
        kept, held = split_rows(len(examples), TEST_FRACTION, seed)
        train, tested = examples.take(kept), examples.take(held)
        evaluation = {"on": "held-out split of the data", "fraction": TEST_FRACTION,
                      "seed": seed, "rows": len(tested)}  # fmt: skip
    if len(train) < MIN_TRAINING_ROWS:
        raise DataError(f"{data}: {len(train)} rows to train on; fitting needs at least "
                        f"{MIN_TRAINING_ROWS} (besides the test rows)")  # fmt: skip
    return train, tested, evaluation


def _check_labels_seen(data: Path, train: Examples, test: Path | None, tested: Examples) -> None:
    """A test label no training row has could never be predicted: refuse rather than score it."""
    known = set(train.y)
    for label, line in zip(tested.y, tested.lines):
        if label in known:
            continue
        if test is not None:
            raise DataError(f"{test} line {line}: the label {label!r} is not among the labels of "
                            f"{data} ({_listed(sorted(known))})")  # fmt: skip
        raise DataError(f"{data} line {line}: the label {label!r} occurs only in rows held out for "
                        f"testing: add rows with it, or give a --test file")  # fmt: skip


def _dataset(data: Path, test: Path | None, train: Examples, tested: Examples) -> dict[str, Any]:
    files = {path.name: sha256_file(path) for path in (data, test) if path is not None}
    return {"files": files, "rows": {"train": len(train), "test": len(tested)}}


# --- Fitting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A written version folder and the figures on its card."""

    folder: Path
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    epochs: int
    training_rows: int

    def summary(self) -> str:
        figures = ", ".join(f"{key} {value:.4f}" for key, value in self.metrics.items())
        return (f"{figures} on {self.evaluation['rows']} test rows ({self.evaluation['on']}); "
                f"{self.epochs} epochs on {self.training_rows} rows")  # fmt: skip


def batch_size(rows: int) -> int:
    return min(512, max(32, rows // STEPS_PER_EPOCH))


def fit(plan: Plan) -> Fitted:
    """Choose the epochs on a validation split, refit on all the training rows, score, write."""
    recipe, output = plan.recipe, plan.recipe.output
    x, y = recipe.inputs(plan.train), recipe.targets(plan.train)
    batch = batch_size(len(y))
    epochs, validation = choose_epochs(recipe, x, y, batch, plan.seed)
    seed_everything(plan.seed)
    model = recipe.build(x)
    history = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
    metrics = recipe.figures(predict(model, recipe.inputs(plan.test)), plan.test)
    card = {
        **card_heading(output, plan.description),
        **output.card(model, plan.train.x, plan.train.y),
        "dataset": plan.dataset,
        "recipe": {"layers": describe(model), **recipe.card(), "epochs": epochs,
                   "batch_size": batch, "seed": plan.seed, "validation": validation,
                   "final_fit": f"from scratch, same seed, on all {len(plan.train)} training rows"},
        "history": history_of(history),
        "metrics": metrics,
        "evaluation": plan.evaluation,
    }  # fmt: skip
    folder = write_version(plan.out, plan.name, model, card, output.files(),
                           rows=recipe.inputs(plan.test))
    return Fitted(folder, metrics, plan.evaluation, epochs, len(plan.train))


def choose_epochs(recipe: TextRecipe | TableRecipe, x: np.ndarray, y: np.ndarray, batch: int,
                  seed: int) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Fit on 80 % of the training rows until the loss on the other 20 % has not improved (by
    ``recipe.min_delta``) for ``recipe.patience`` epochs. The epochs to train for are the fewest
    that came within ``min_delta`` of the lowest validation loss; with the card's record."""
    import keras

    kept, held = split_rows(len(y), VALIDATION_FRACTION, seed)
    seed_everything(seed)
    model = recipe.build(x[kept])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=recipe.patience, min_delta=recipe.min_delta
    )
    history = model.fit(x[kept], y[kept], validation_data=(x[held], y[held]),
                        epochs=recipe.max_epochs, batch_size=batch, callbacks=[stop],
                        verbose=0)  # fmt: skip
    val_loss = [float(value) for value in history.history["val_loss"]]
    best = next(i for i, loss in enumerate(val_loss, 1) if loss <= min(val_loss) + recipe.min_delta)
    return best, {
        "fraction": VALIDATION_FRACTION, "seed": seed, "rows": len(held),
        "max_epochs": recipe.max_epochs, "patience": recipe.patience,
        "min_delta": recipe.min_delta, "best_epoch": best, "val_loss": val_loss,
    }  # fmt: skip


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """One forward pass over all the rows, as the test figures are computed from."""
    return np.asarray(model(x, training=False))
