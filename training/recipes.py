"""The three recipes of *Deep Learning with Python*, chapter 3 (see ../shared/seed-recipes.md).

Each ``train_*`` function reproduces the book's final model and returns it with what its model
card needs: the recipe in words, the per-epoch history and the test metrics. Text inputs go
through ``service.vectorize`` exactly as served requests do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # training needs TensorFlow (numpy can't fit)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from service.schemas import FEATURE_NAMES  # noqa: E402
from service.vectorize import NUM_WORDS, multi_hot  # noqa: E402
from training.datasets import Split  # noqa: E402


@dataclass
class Trained:
    """A trained model and the figures its model card records."""

    model: keras.Model
    recipe: dict[str, Any]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Same seed, same weights and batches: reruns give the same model on the same machine."""
    keras.utils.set_random_seed(seed)


def dense_stack(
    inputs: int, hidden: list[int], outputs: int, activation: str, final: str | None, name: str
) -> keras.Model:
    layers: list[keras.layers.Layer] = [keras.Input((inputs,), name="multi_hot")]
    layers += [
        keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")
        for i, units in enumerate(hidden, start=1)
    ]
    layers.append(keras.layers.Dense(outputs, activation=final, name="output"))
    return keras.Sequential(layers, name=name)


def describe(model: keras.Model) -> list[str]:
    """The layers in words, for the model card."""
    described = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            described.append(f"Dense({layer.units}, {layer.activation.__name__})")
        else:
            described.append(type(layer).__name__)
    return described


def _history(fit: keras.callbacks.History) -> dict[str, list[float]]:
    return {key: [float(v) for v in values] for key, values in fit.history.items()}


def _callbacks(tensorboard: str | None, run: str) -> list[keras.callbacks.Callback]:
    return [keras.callbacks.TensorBoard(os.path.join(tensorboard, run))] if tensorboard else []


# --- IMDB: binary classification ---------------------------------------------------------


def build_imdb_model(hidden: tuple[int, ...] = (16, 16), activation: str = "relu",
                     loss: str = "binary_crossentropy") -> keras.Model:  # fmt: skip
    model = dense_stack(NUM_WORDS, list(hidden), 1, activation, "sigmoid", "imdb")
    model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"])
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
    return Trained(model, recipe, _history(fit), {"test_accuracy": accuracy, "test_loss": loss})


# --- Reuters: 46-way classification -------------------------------------------------------


def build_reuters_model(hidden: tuple[int, ...] = (64, 64)) -> keras.Model:
    model = dense_stack(NUM_WORDS, list(hidden), 46, "relu", "softmax", "reuters")
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3_accuracy")],
    )
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
    return Trained(model, recipe, _history(fit), metrics)


# --- Boston housing: regression ------------------------------------------------------------


def build_boston_model(x_train: np.ndarray) -> keras.Model:
    """Normalization adapted on the training rows is the first layer: the model reads raw features."""
    normalization = keras.layers.Normalization(name="normalization")
    normalization.adapt(np.asarray(x_train, dtype="float32"))
    model = keras.Sequential(
        [
            keras.Input((len(FEATURE_NAMES),), name="features"),
            normalization,
            keras.layers.Dense(64, activation="relu", name="hidden_1"),
            keras.layers.Dense(64, activation="relu", name="hidden_2"),
            keras.layers.Dense(1, name="price"),
        ],
        name="boston",
    )
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
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
    return Trained(model, recipe, _history(fit), metrics)
