"""The version-2 text networks: a TF-IDF bag of words and word pairs (``service.contract.tfidf``)
read by an embedding bag, then Dense layers (issue 16: IMDB ≥ 0.905, Reuters ≥ 0.82 on the raw
test sets). ``training.recipes`` lists them as the ``improved`` recipes of IMDB and Reuters
(``python -m training train NAME --recipe improved``); they build on the toolbox,
``training.networks``, and read their texts through ``training.texts``.

The network has two inputs, ``terms`` (int32 ids, ``(batch, length)``) and ``weights`` (float32,
same shape). ``Embedding(V + 1, width)`` looks the terms up and ``Dot(axes=(1, 1))`` sums them
weighted: exactly the TF-IDF row times a ``(V, width)`` matrix, at the cost of the row's terms.
Only built-in layers, so the service loads it in safe mode and Keras exports it to ONNX.

Training pads each batch to its own longest row, holds out a validation split for early stopping
(the best epoch's weights are kept), and scores the test set through ``TfidfBag.encode``, the
path the server takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from service.contract.tfidf import VOCABULARY_FILE, TfidfBag
from training.datasets import reuters_label_names
from training.networks import Trained, describe, seed_everything
from training.texts import TextSplit, dense_batch

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class BagRecipe:
    """One variant of the version-2 recipe: vectorization, network and fit settings."""

    vocabulary: int = 200_000
    ngram_max: int = 2
    sublinear_tf: bool = True
    width: int = 32
    """Units of the embedding bag (the first layer's output)."""
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    """Dropout on the bag's output (and after each hidden layer)."""
    learning_rate: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 12
    patience: int = 2
    validation: int = 5_000
    """Training rows held out (the first ones) for early stopping."""
    loss: str = "crossentropy"
    """Or "squared_hinge": one-vs-rest squared hinge on the scores before the softmax (a linear
    SVM's loss); the served network still ends in the softmax, whose argmax is the same."""
    l2: float = 0.0
    """L2 penalty on the term embeddings (0: none)."""
    refit: bool = False
    """Then train again from scratch on all training rows for the best epoch count."""

    def describe(self) -> str:
        hidden = "".join(f" → Dense({units}, relu)" for units in self.hidden)
        drop = f", dropout {self.dropout}" if self.dropout else ""
        return (f"{self.vocabulary // 1000}k terms (1–{self.ngram_max}-grams), "
                f"{'sublinear ' if self.sublinear_tf else ''}tf-idf; bag {self.width}{hidden}{drop}")  # fmt: skip


def bag_dataset(rows: Sequence[tuple[np.ndarray, np.ndarray]], y: np.ndarray, batch_size: int,
                shuffle_seed: int | None) -> Any:  # fmt: skip
    """A ``tf.data`` pipeline of bag batches, each padded (id 0, weight 0) to its own longest
    row: a review of 200 terms is not padded to the 2,000 of the longest one."""
    import tensorflow as tf

    lengths = np.array([len(ids) for ids, _ in rows], dtype=np.int64)
    ids = np.concatenate([ids for ids, _ in rows]).astype(np.int32)
    weights = np.concatenate([w for _, w in rows]).astype(np.float32)
    terms = tf.RaggedTensor.from_row_lengths(ids, lengths)
    values = tf.RaggedTensor.from_row_lengths(weights, lengths)
    data = tf.data.Dataset.from_tensor_slices(({"terms": terms, "weights": values}, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (
        data.ragged_batch(batch_size)
        .map(tf.autograph.experimental.do_not_convert(dense_batch))
        .prefetch(2)
    )


def build_bag_model(
    vocabulary: int, recipe: BagRecipe, outputs: int, final: str, name: str
) -> keras.Model:
    """terms, weights → Embedding bag → [Dropout] → Dense hidden → output."""
    import keras

    terms = keras.Input((None,), dtype="int32", name="terms")
    weights = keras.Input((None,), dtype="float32", name="weights")
    penalty = keras.regularizers.L2(recipe.l2) if recipe.l2 else None
    embedded = keras.layers.Embedding(
        vocabulary + 1, recipe.width, embeddings_regularizer=penalty, name="term_embedding"
    )(terms)
    x = keras.layers.Dot(axes=(1, 1), name="tfidf_bag")([weights, embedded])
    for i, units in enumerate(recipe.hidden, start=1):
        if recipe.dropout:
            x = keras.layers.Dropout(recipe.dropout, name=f"dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    if recipe.dropout:
        x = keras.layers.Dropout(recipe.dropout, name="dropout_out")(x)
    if recipe.loss == "crossentropy":
        output = keras.layers.Dense(outputs, activation=final, name="output")(x)
    else:  # trained on the scores (``trainee``), served through the same final activation
        logits = keras.layers.Dense(outputs, name="logits")(x)
        output = keras.layers.Activation(final, name="output")(logits)
    return keras.Model({"terms": terms, "weights": weights}, output, name=name)


@dataclass
class Fitted:
    """A trained version-2 network, its vectorization and its figures."""

    model: keras.Model
    bag: TfidfBag
    recipe: BagRecipe
    history: dict[str, list[float]]
    metrics: dict[str, float]
    best_epoch: int


def vectorize(
    split: TextSplit, recipe: BagRecipe
) -> tuple[TfidfBag, list[tuple[np.ndarray, np.ndarray]]]:
    """The recipe's vocabulary and idf, fitted on all training texts, and their rows."""
    bag = TfidfBag.fit(split.x_train, recipe.vocabulary, recipe.ngram_max, recipe.sublinear_tf)
    return bag, [bag.row(text) for text in split.x_train]


def fit_bag(split: TextSplit, recipe: BagRecipe, seed: int, binary: bool, verbose: int = 2,
            vectorized: tuple[TfidfBag, list[tuple[np.ndarray, np.ndarray]]] | None = None) -> Fitted:  # fmt: skip
    """Vocabulary and idf from all training texts (unsupervised, never the test set); the network
    on the training texts minus the first ``validation`` ones, early-stopped on those (with
    ``refit``, then retrained on all of them for the epochs found); test
    figures through ``TfidfBag.encode``, the serving path. ``vectorized``: ``vectorize``'s result
    for this recipe, reused across seeds (it does not depend on the seed)."""
    import keras

    seed_everything(seed)
    bag, rows = vectorized or vectorize(split, recipe)
    cut = recipe.validation
    model, trainee = compiled_bag_model(bag, recipe, binary, split)
    y = targets(split.y_train, recipe, binary)
    train = bag_dataset(rows[cut:], y[cut:], recipe.batch_size, seed)
    val = bag_dataset(rows[:cut], y[:cut], 1024, None)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.patience,
                                         restore_best_weights=True)  # fmt: skip
    fit = trainee.fit(train, validation_data=val, epochs=recipe.max_epochs, callbacks=[stop],
                    verbose=verbose)  # fmt: skip
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    best = int(np.argmin(history["val_loss"]))
    metrics = {"val_accuracy": history["val_accuracy"][best], "val_loss": history["val_loss"][best]}
    if recipe.refit:  # the epochs found, again from scratch on every training text
        seed_everything(seed)
        model, trainee = compiled_bag_model(bag, recipe, binary, split)
        everything = bag_dataset(rows, y, recipe.batch_size, seed)
        refit = trainee.fit(everything, epochs=best + 1, verbose=verbose)
        history |= {
            f"refit_{key}": [float(v) for v in values] for key, values in refit.history.items()
        }
    metrics |= score(model, bag, split.x_test, split.y_test, binary)
    return Fitted(model, bag, recipe, history, metrics, best + 1)


def compiled_bag_model(bag: TfidfBag, recipe: BagRecipe, binary: bool,
                       split: TextSplit) -> tuple[keras.Model, keras.Model]:  # fmt: skip
    """The served network, and the one to train: the same, or (hinge loss) the same layers up
    to the scores before the final activation, which shares their weights."""
    import keras

    classes = 1 if binary else int(split.y_train.max()) + 1
    model = build_bag_model(bag.size, recipe, classes, "sigmoid" if binary else "softmax",
                            "imdb" if binary else "reuters")  # fmt: skip
    optimizer = keras.optimizers.Adam(recipe.learning_rate)
    if recipe.loss == "crossentropy":
        loss = "binary_crossentropy" if binary else "sparse_categorical_crossentropy"
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        return model, model
    trainee = keras.Model(
        model.inputs, model.get_layer("logits").output, name=f"{model.name}_scores"
    )
    trainee.compile(optimizer=optimizer, loss=keras.losses.SquaredHinge(),
                    metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])  # fmt: skip
    return model, trainee


def targets(y: np.ndarray, recipe: BagRecipe, binary: bool) -> np.ndarray:
    """Labels as the loss reads them: ids for cross-entropy, one-vs-rest rows for the hinge."""
    if recipe.loss == "crossentropy" or binary:
        return y
    return np.eye(int(y.max()) + 1, dtype=np.float32)[y]


def predict_texts(
    model: keras.Model, bag: TfidfBag, texts: Sequence[str], chunk: int = 1000
) -> np.ndarray:
    """The network's outputs on raw texts, vectorized as the server vectorizes them."""
    outputs = [np.asarray(model.predict_on_batch(bag.encode(texts[i : i + chunk]).feeds()))
               for i in range(0, len(texts), chunk)]  # fmt: skip
    return np.concatenate(outputs)


def score(model: keras.Model, bag: TfidfBag, texts: Sequence[str], labels: np.ndarray,
          binary: bool) -> dict[str, float]:  # fmt: skip
    """Test accuracy (and Reuters' top-3) on raw texts."""
    outputs = predict_texts(model, bag, texts)
    if binary:
        return {"test_accuracy": float(np.mean((outputs[:, 0] >= 0.5) == (labels >= 0.5)))}
    top3 = np.argsort(-outputs, axis=1)[:, :3]
    return {
        "test_accuracy": float(np.mean(np.argmax(outputs, axis=1) == labels)),
        "test_top3_accuracy": float(np.mean((top3 == labels[:, None]).any(axis=1))),
    }


def recipe_card(fitted: Fitted, seed: int) -> dict[str, Any]:
    """The card's ``recipe``: the settings, the layers, and how the epochs were chosen."""
    settings = asdict(fitted.recipe)
    return {
        "name": "improved", "layers": describe(fitted.model), "optimizer": "adam",
        "seed": seed, "best_epoch": fitted.best_epoch,
        **settings, "hidden": list(fitted.recipe.hidden),
        "validation": f"first {fitted.recipe.validation} training texts held out; early stopping "
                      f"on their loss (patience {fitted.recipe.patience}), best epoch's weights kept"
                      + ("; then retrained from scratch on all training texts for that many epochs"
                         if fitted.recipe.refit else ""),
        "epochs_run": len(fitted.history["loss"]),
    }  # fmt: skip


IMDB_BAG = BagRecipe()
REUTERS_BAG = BagRecipe(
    validation=1_000,
    width=64,
    learning_rate=3e-3,
    batch_size=256,
    max_epochs=80,
    patience=5,
    loss="squared_hinge",
    l2=1e-6,
    refit=True,
)


def with_changes(recipe: BagRecipe, **changes: Any) -> BagRecipe:
    return replace(recipe, **changes)


# --- The card and the command line: ``python -m training train NAME --recipe improved`` -----


@dataclass
class BagTextClassifierCard:
    """The card's kind-specific part for a TF-IDF bag text classifier (``training.cards``'
    ``TextClassifierCard`` for the multi-hot models): labels, the vectorization, its vocabulary
    file. ``bag`` is the fitted vectorization (set by training; the card cannot exist before it)."""

    labels: Sequence[str]
    bag: TfidfBag | None = None
    kind = "text-classifier"

    @property
    def task(self) -> str:
        return "binary-classification" if len(self.labels) == 2 else "multiclass-classification"

    def fitted(self) -> TfidfBag:
        if self.bag is None:
            raise ValueError("the vectorization is fitted by training: train first")
        return self.bag

    def inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw texts → the network's named inputs, as the server builds them."""
        return self.fitted().encode(list(texts)).feeds()

    def card(self, model: Any, x_train: Any, y_train: Any) -> dict[str, Any]:
        return {"preprocessing": self.fitted().card(), "labels": list(self.labels)}

    def files(self) -> dict[str, str]:
        return {VOCABULARY_FILE: self.fitted().to_json()}


def train_bag(split: TextSplit, seed: int, binary: bool, labels: Sequence[str],
              recipe: BagRecipe, verbose: int = 2) -> Trained:  # fmt: skip
    """``fit_bag``, as the ``Trained`` the writer takes; the fitted vectorization rides along
    in ``extra["output"]`` so the card and the vocabulary file are the ones trained with."""
    fitted = fit_bag(split, recipe, seed, binary, verbose)
    metrics = {key: value for key, value in fitted.metrics.items() if key.startswith("test_")}
    metrics["val_accuracy"] = fitted.metrics["val_accuracy"]
    return Trained(without_optimizer(fitted.model), recipe_card(fitted, seed), fitted.history, metrics,
                   {"output": BagTextClassifierCard(labels, fitted.bag)})  # fmt: skip


def without_optimizer(model: keras.Model) -> keras.Model:
    """The same network and weights, uncompiled: ``model.save`` then leaves out Adam's two
    moments per weight, which would triple a 200,000-term model.keras (77 MB instead of 26)."""
    import keras

    clean = keras.Model.from_config(model.get_config())  # clone_model would compile it too
    clean.set_weights(model.get_weights())
    return clean


def train_imdb_bag(split: TextSplit, seed: int, tensorboard: str | None = None,
                   verbose: int = 2) -> Trained:  # fmt: skip
    return train_bag(split, seed, True, IMDB_LABELS, IMDB_BAG, verbose)


def train_reuters_bag(split: TextSplit, seed: int, tensorboard: str | None = None,
                      verbose: int = 2) -> Trained:  # fmt: skip
    return train_bag(split, seed, False, reuters_label_names(), REUTERS_BAG, verbose)


IMDB_LABELS = ("negative", "positive")
