"""The catalogue of recipes: the three of *Deep Learning with Python*, chapter 3 (see
../shared/seed-recipes.md), in :data:`BOOK`, the one table that says, per book model, how it is
loaded, trained, evaluated and described on its model card; their version 2 (issue 16), the
same data and card with better networks; and :data:`RECIPES`, each table by its ``--recipe``
name.

Each ``train_*`` function reproduces the book's final model and returns it with what its model
card needs: the recipe in words, the per-epoch history and the test metrics. Text inputs go
through ``service.contract.vectorize`` exactly as served requests do. The layer stacks, the seed
and ``Trained`` come from the toolbox, ``training.networks``, which ``fit`` and the version-2 text
networks share: they import it, never this catalogue that lists them.

Keras is imported inside the functions that need it, not here: the command line reads
:data:`BOOK` for its choices, and ``fit`` checks a user's file, without paying TensorFlow's
seconds of start-up (or its chatter before a one-line error).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from service.contract.vectorize import NUM_WORDS, multi_hot
from training.cards import Derived, Output, TableRegressorCard, TextClassifierCard
from training.datasets import (
    BOSTON_FEATURES,
    BOSTON_TARGET,
    DataSource,
    Split,
    load_boston,
    load_imdb,
    load_reuters,
    load_word_index,
    reuters_label_names,
)
from training.ensembles import RegressorSpec, best_epoch, kfold
from training.ensembles import fit as fit_ensemble
from training.networks import (
    Trained,
    compile_regressor,
    dense_stack,
    describe,
    history_of,
    normalized_regressor,
    seed_everything,
)
from training.texts import load_imdb_texts, load_reuters_texts
from training.tfidf_networks import (
    IMDB_LABELS,
    BagTextClassifierCard,
    train_imdb_bag,
    train_reuters_bag,
)

if TYPE_CHECKING:
    import keras


def _callbacks(tensorboard: str | None, run: str) -> list[keras.callbacks.Callback]:
    import keras

    return [keras.callbacks.TensorBoard(os.path.join(tensorboard, run))] if tensorboard else []


# --- IMDB: binary classification ---------------------------------------------------------


def compile_imdb(model: keras.Model, loss: str = "binary_crossentropy") -> None:
    model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"])


def build_imdb_model(hidden: tuple[int, ...] = (16, 16), activation: str = "relu",
                     loss: str = "binary_crossentropy") -> keras.Model:  # fmt: skip
    model = dense_stack(NUM_WORDS, list(hidden), 1, activation, "sigmoid", "imdb")
    compile_imdb(model, loss)
    return model


def train_imdb(split: Split, seed: int, tensorboard: str | None = None, verbose: int = 2) -> Trained:
    """Final recipe: all 25,000 training reviews, 4 epochs, batch 512 (the book's 0.8836)."""
    seed_everything(seed)
    x_train, x_test = multi_hot(split.x_train), multi_hot(split.x_test)
    model = build_imdb_model()
    fit = model.fit(x_train, split.y_train, epochs=4, batch_size=512, verbose=verbose,
                    callbacks=_callbacks(tensorboard, "imdb"))  # fmt: skip
    loss, accuracy = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0)
    recipe = {
        "layers": describe(model), "optimizer": "rmsprop", "loss": "binary_crossentropy",
        "metrics": ["accuracy"], "epochs": 4, "batch_size": 512, "seed": seed,
        "validation": "model selection on the first 10,000 training reviews held out (20 epochs: "
                      "lowest validation loss near epoch 4); final fit on all 25,000",
    }  # fmt: skip
    return Trained(model, recipe, history_of(fit), {"test_accuracy": accuracy, "test_loss": loss})


# --- Reuters: 46-way classification -------------------------------------------------------


def compile_reuters(model: keras.Model) -> None:
    import keras

    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3_accuracy")],
    )


def build_reuters_model(hidden: tuple[int, ...] = (64, 64)) -> keras.Model:
    model = dense_stack(NUM_WORDS, list(hidden), 46, "relu", "softmax", "reuters")
    compile_reuters(model)
    return model


def train_reuters(split: Split, seed: int, tensorboard: str | None = None, verbose: int = 2) -> Trained:
    """Final recipe: 9 epochs, batch 512, on the 7,982 rows left after holding out 1,000."""
    seed_everything(seed)
    x_train, x_test = multi_hot(split.x_train), multi_hot(split.x_test)
    x_val, y_val = x_train[:1000], split.y_train[:1000]
    model = build_reuters_model()
    fit = model.fit(x_train[1000:], split.y_train[1000:], epochs=9, batch_size=512,
                    validation_data=(x_val, y_val), verbose=verbose,
                    callbacks=_callbacks(tensorboard, "reuters"))  # fmt: skip
    loss, accuracy, top3 = model.evaluate(x_test, split.y_test, batch_size=2048, verbose=0)
    recipe = {
        "layers": describe(model), "optimizer": "rmsprop", "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy", "top3_accuracy"], "epochs": 9, "batch_size": 512, "seed": seed,
        "validation": "first 1,000 training newswires held out (overfitting starts near epoch "
                      "9 of 20); final fit on the remaining 7,982",
    }  # fmt: skip
    metrics = {"test_accuracy": accuracy, "test_loss": loss, "test_top3_accuracy": top3}
    return Trained(model, recipe, history_of(fit), metrics)


# --- Boston housing: regression ------------------------------------------------------------


def build_boston_model(x_train: np.ndarray) -> keras.Model:
    """Normalization adapted on the training rows is the first layer: the model reads raw features."""
    model = normalized_regressor(x_train, "price", "boston")
    compile_regressor(model)
    return model


def kfold_validation(x: np.ndarray, y: np.ndarray, k: int, epochs: int, batch_size: int,
                     seed: int, verbose: int = 0,
                     tensorboard: str | None = None) -> tuple[float, list[list[float]]]:  # fmt: skip
    """The book's K-fold run: mean final validation MAE and each fold's per-epoch curve."""
    fold_size = len(x) // k
    final_maes, curves = [], []
    for fold in range(k):
        seed_everything(seed + fold)
        val = slice(fold * fold_size, (fold + 1) * fold_size)
        x_val, y_val = x[val], y[val]
        x_fit = np.concatenate([x[: val.start], x[val.stop :]])
        y_fit = np.concatenate([y[: val.start], y[val.stop :]])
        model = build_boston_model(x_fit)
        fit = model.fit(x_fit, y_fit, validation_data=(x_val, y_val), epochs=epochs,
                        batch_size=batch_size, verbose=verbose,
                        callbacks=_callbacks(tensorboard, f"boston-fold-{fold}"))  # fmt: skip
        curves.append([float(v) for v in fit.history["val_mae"]])
        final_maes.append(curves[-1][-1])
        if verbose:
            print(f"fold {fold + 1}/{k}: validation MAE {final_maes[-1]:.3f}")
    return float(np.mean(final_maes)), curves


def train_boston(split: Split, seed: int, tensorboard: str | None = None, verbose: int = 2,
                 kfold_epochs: int = 100, kfold_batch_size: int = 16) -> Trained:  # fmt: skip
    """K-fold (k=4) validation, then the final recipe: 80 epochs, batch 16, all 404 rows."""
    x_train = np.asarray(split.x_train, dtype="float32")
    y_train = np.asarray(split.y_train, dtype="float32")
    kfold_mae, _ = kfold_validation(x_train, y_train, 4, kfold_epochs, kfold_batch_size, seed,
                                    verbose=1 if verbose else 0)  # fmt: skip
    seed_everything(seed)
    model = build_boston_model(x_train)
    fit = model.fit(x_train, y_train, epochs=80, batch_size=16, verbose=verbose,
                    callbacks=_callbacks(tensorboard, "boston"))  # fmt: skip
    mse, mae = model.evaluate(np.asarray(split.x_test, dtype="float32"), split.y_test, verbose=0)
    recipe = {
        "layers": describe(model), "optimizer": "rmsprop", "loss": "mse", "metrics": ["mae"],
        "epochs": 80, "batch_size": 16, "seed": seed,
        "normalization": "feature-wise (x - mean) / std of the 404 training rows, inside the model",
        "validation": f"K-fold, k=4, {kfold_epochs} epochs, batch {kfold_batch_size}, "
                      "mean of the folds' final validation MAE (the book: 100 epochs, batch 1)",
    }  # fmt: skip
    metrics = {"test_mae": mae, "test_mse": mse, "kfold_val_mae": kfold_mae}
    return Trained(model, recipe, history_of(fit), metrics)


# --- Boston housing, version 2: an averaged ensemble (issue 16) ----------------------------

BOSTON_ENSEMBLE = RegressorSpec(hidden=(64, 64), members=5, epochs=270, batch_size=16,
                                loss="huber", huber_delta=2.0, ema=0.999)
"""The version-2 Boston recipe, chosen by K-fold validation in ``experiments/boston/v2.md``
(``python experiments/boston/v2_variants.py``)."""


def train_boston_ensemble(split: Split, seed: int, tensorboard: str | None = None,
                          verbose: int = 2, spec: RegressorSpec = BOSTON_ENSEMBLE) -> Trained:  # fmt: skip
    """K-fold (k=4) validation of ``spec``, then its members trained on all 404 rows and
    averaged into one model that reads the same 13 raw features and answers the same price."""
    x_train = np.asarray(split.x_train, dtype="float32")
    y_train = np.asarray(split.y_train, dtype="float32")
    validation = kfold(x_train, y_train, spec, seed)
    if verbose:
        print(f"K-fold validation MAE {validation.mean:.3f} (folds "
              f"{', '.join(f'{v:.3f}' for v in validation.final)})", flush=True)  # fmt: skip
    model, history = fit_ensemble(x_train, y_train, spec, seed, output="price", name="boston",
                                  callbacks=_callbacks(tensorboard, "boston-improved"))  # fmt: skip
    compile_regressor(model)
    mse, mae = model.evaluate(np.asarray(split.x_test, dtype="float32"), split.y_test, verbose=0)
    member = "".join(f"Dense({units}, relu) → " for units in spec.hidden)
    member += "Dense(1, linear)" + (" → exp (trained on log price)" if spec.target == "log" else "")
    optimizer = f"rmsprop (learning rate {spec.learning_rate:g}"
    optimizer += ", cosine decay to 0" if spec.schedule == "cosine" else ""
    optimizer += f", weights served as their EMA, momentum {spec.ema:g})" if spec.ema else ")"
    recipe = {
        "layers": ["Normalization", f"{spec.members} × ({member})",
                   "Average" if spec.members > 1 else "(single network)"],
        "optimizer": optimizer,
        "loss": spec.loss if spec.loss == "mse" else f"huber (delta {spec.huber_delta:g})",
        "metrics": ["mae"], "epochs": spec.epochs, "batch_size": spec.batch_size, "seed": seed,
        "ensemble": spec.describe(),
        "normalization": "feature-wise (x - mean) / std of the 404 training rows, inside the model, "
                         "shared by every member",
        "validation": f"K-fold, k=4, of the whole ensemble ({spec.epochs} epochs, batch "
                      f"{spec.batch_size}): mean of the folds' final validation MAE "
                      f"{validation.mean:.4f}; epochs and variant chosen in experiments/boston/v2.md",
        "kfold_best_epoch": best_epoch(validation),
    }  # fmt: skip
    metrics = {"test_mae": mae, "test_mse": mse, "kfold_val_mae": validation.mean}
    return Trained(model, recipe, history, metrics)


# --- The book's models, one table ---------------------------------------------------------


@dataclass(frozen=True)
class BookRecipe:
    """One book model: its data, its training, how ``evaluate`` re-scores it, its card."""

    description: str
    load: Callable[[DataSource], Split]
    """The Keras dataset, split as ``keras.datasets`` does."""
    train: Callable[[Split, int, str | None], Trained]
    """``train(split, seed, tensorboard_dir)``."""
    output: Callable[[DataSource], Output]
    """The card's kind-specific part (kind, task, labels and word index, or features and target)."""
    compile: Callable[[keras.Model], None]
    """Compiles a loaded model with the recipe's loss and metrics, for ``evaluate``."""
    evaluated: dict[str, str]
    """Keras' name of each figure ``model.evaluate`` returns → its name on the card."""
    book_metrics: dict[str, float]
    """The book's own figures, printed on the card beside ours."""
    seed: int = 1


BOOK: dict[str, BookRecipe] = {
    "imdb": BookRecipe(
        description="Probability that a movie review is positive.",
        load=load_imdb,
        train=train_imdb,
        output=lambda source: TextClassifierCard(
            labels=["negative", "positive"], word_index=load_word_index(source, "imdb")
        ),
        compile=compile_imdb,
        evaluated={"loss": "test_loss", "accuracy": "test_accuracy"},
        book_metrics={"test_accuracy": 0.8836, "test_loss": 0.292},
    ),
    "reuters": BookRecipe(
        description="The topic of a Reuters newswire among 46.",
        load=load_reuters,
        train=train_reuters,
        output=lambda source: TextClassifierCard(
            labels=reuters_label_names(), word_index=load_word_index(source, "reuters")
        ),
        compile=compile_reuters,
        evaluated={
            "loss": "test_loss", "accuracy": "test_accuracy", "top3_accuracy": "test_top3_accuracy"
        },
        book_metrics={"test_accuracy": 0.7912, "test_loss": 0.983},
    ),
    "boston": BookRecipe(
        description="Median value of homes in a 1970s Boston district, in $1000s.",
        load=load_boston,
        train=train_boston,
        output=lambda source: TableRegressorCard(
            features=BOSTON_FEATURES,
            target=BOSTON_TARGET,
            field="price",
            derived=[Derived("price_usd", scale=1000, decimals=2)],
        ),
        compile=compile_regressor,
        evaluated={"loss": "test_mse", "mae": "test_mae"},
        book_metrics={"test_mae": 2.61, "test_mse": 17.43, "kfold_val_mae": 2.40},
    ),
}
"""The book's models by name, in the order ``train all`` trains them."""

VERSION_2: dict[str, BookRecipe] = {
    "imdb": replace(
        BOOK["imdb"], load=load_imdb_texts, train=train_imdb_bag,  # type: ignore[arg-type]
        output=lambda source: BagTextClassifierCard(IMDB_LABELS),  # type: ignore[arg-type,return-value]
    ),
    "reuters": replace(
        BOOK["reuters"], load=load_reuters_texts, train=train_reuters_bag,  # type: ignore[arg-type]
        output=lambda source: BagTextClassifierCard(reuters_label_names()),  # type: ignore[arg-type,return-value]
    ),
    "boston": replace(BOOK["boston"], train=train_boston_ensemble),
}
"""The version-2 recipes of issue 16, by model name: the same data and card as the book's,
better networks. ``python -m training train NAME --recipe improved``."""

RECIPES: dict[str, dict[str, BookRecipe]] = {"book": BOOK, "improved": VERSION_2}
"""Every recipe table by its ``--recipe`` name."""
